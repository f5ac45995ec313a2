import AtlasSecrets

CLI.main(Array(CommandLine.arguments.dropFirst()))
