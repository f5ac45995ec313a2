/// The version `atlas-secrets --version` prints.
public let atlasSecretsVersion = "0.1.0"
