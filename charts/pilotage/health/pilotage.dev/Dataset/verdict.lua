-- Argo CD health of a pilotage.dev/v1alpha1 Dataset: Healthy once profiled and valid (Ready),
--   Degraded when Failed or Stalled, Progressing otherwise.

if isStalled or phase == "Failed" then
  return say("Degraded", text)
end
if phase == "Ready" and isReady then
  return say("Healthy", text)
end
return say("Progressing", text)
