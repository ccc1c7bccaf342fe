-- Argo CD health of a pilotage.dev/v1alpha1 ModelDeployment: Healthy when the stable version
--   serves all traffic (Ready), Suspended while a rollout is Paused (waiting for a promote or a
--   pause step), Degraded after a rollback, an abort or when Stalled, Progressing during a
--   rollout.

if phase == "Paused" then
  return say("Suspended", text)
end
if isStalled or phase == "Degraded" then
  return say("Degraded", text)
end
if phase == "Healthy" and isReady then
  return say("Healthy", text)
end
return say("Progressing", text)
