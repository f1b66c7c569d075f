#!/bin/sh
# Uploads the nightly backup.
export AWS_ACCESS_KEY_ID=AKIAZ4QW7RTY3UPLMN5K
aws s3 cp backup.tar.gz s3://acme-backups/
