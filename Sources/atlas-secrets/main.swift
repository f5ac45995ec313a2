import AtlasSecrets
print("atlas-secrets")
