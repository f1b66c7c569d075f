-- Argo CD health of a chamberlain.dev/SecretIntent, from the status the chamberlain controller writes
-- (docs/status.md). Degraded: the Degraded condition is True (invalid intent, held, past its ttl, rotations
-- failing). Progressing: no status yet, an older generation observed, a rotation in flight, or consumers not yet
-- carrying the current version. Healthy: Ready is True. Lua 5.1 (Argo CD's gopher-lua); no value is ever read.
local hs = {status = "Progressing", message = "waiting for the chamberlain controller to report"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "waiting for the controller to observe generation " .. generation
  return hs
end
local c = {}
for _, cond in ipairs(obj.status.conditions) do
  if cond.type ~= nil then
    c[cond.type] = cond
  end
end
local function text(cond)
  local out = cond.reason or ""
  if cond.message ~= nil and cond.message ~= "" then
    out = out .. ": " .. cond.message
  end
  return out
end
if c.Degraded ~= nil and c.Degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = text(c.Degraded)
  return hs
end
if c.Rotating ~= nil and c.Rotating.status == "True" then
  hs.message = text(c.Rotating)
  return hs
end
if c.Ready ~= nil and c.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(c.Ready)
  return hs
end
if c.Ready ~= nil then
  hs.message = text(c.Ready)
end
return hs
