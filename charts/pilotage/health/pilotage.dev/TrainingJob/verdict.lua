-- Argo CD health of a pilotage.dev/v1alpha1 TrainingJob: Healthy when Succeeded with its gates
--   passed (Ready), Degraded when Failed, its gates failed or Stalled, Progressing while Pending
--   or Running.

if isStalled or phase == "Failed" then
  return say("Degraded", text)
end
if phase == "Succeeded" and isReady then
  return say("Healthy", text)
end
return say("Progressing", text)
