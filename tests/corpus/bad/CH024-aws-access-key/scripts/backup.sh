#!/bin/sh
# Uploads the nightly backup.
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
aws s3 cp backup.tar.gz s3://acme-backups/
