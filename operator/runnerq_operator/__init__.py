"""The runnerq Kubernetes operator: ActivityQueue resources -> Redis config + worker Deployments."""
