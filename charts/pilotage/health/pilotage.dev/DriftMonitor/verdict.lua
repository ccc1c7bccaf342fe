-- Argo CD health of a pilotage.dev/v1alpha1 DriftMonitor: Degraded while the live inputs drift
--   (Drifting) or when Stalled, Healthy when checks run (Healthy, or InsufficientData while too
--   few requests came), Progressing while it waits for its deployment.

if isStalled or phase == "Drifting" then
  return say("Degraded", text)
end
if isReady and (phase == "Healthy" or phase == "InsufficientData") then
  return say("Healthy", text)
end
return say("Progressing", text)
