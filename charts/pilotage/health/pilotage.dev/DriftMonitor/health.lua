-- Argo CD health of a pilotage.dev/v1alpha1 DriftMonitor: Degraded while the live inputs drift
--   (Drifting) or when Stalled, Healthy when checks run (Healthy, or InsufficientData while too
--   few requests came), Progressing while it waits for its deployment.
-- Reads status.phase, the kstatus conditions (Ready, Stalled) and observedGeneration.
local hs = {}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function say(status, text)
  hs.status = status
  hs.message = text
  return hs
end

if obj.status == nil or obj.status.phase == nil then
  return say("Progressing", "Waiting for the operator to report status")
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  return say("Progressing", "Waiting for the operator to observe generation " .. generation)
end

local phase = obj.status.phase
local ready = condition("Ready")
local stalled = condition("Stalled")
local message = obj.status.message
if message == nil or message == "" then
  if ready ~= nil and ready.message ~= nil then
    message = ready.message
  else
    message = ""
  end
end
local text = phase
if message ~= "" then
  text = phase .. ": " .. message
end
local isReady = ready ~= nil and ready.status == "True"
local isStalled = stalled ~= nil and stalled.status == "True"

if isStalled or phase == "Drifting" then
  return say("Degraded", text)
end
if isReady and (phase == "Healthy" or phase == "InsufficientData") then
  return say("Healthy", text)
end
return say("Progressing", text)
