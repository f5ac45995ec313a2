// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "atlas-secrets",
    products: [
        .executable(name: "atlas-secrets", targets: ["atlas-secrets"]),
        .executable(name: "atlas-sim", targets: ["atlas-sim"]),
        .library(name: "AtlasSecrets", targets: ["AtlasSecrets"]),
    ],
    targets: [
        // C libraries from Debian, one system-library target each; paths come from pkg-config.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        // The engine: PostgreSQL queue, Atlas client, crypto, worker, command implementations.
        .target(name: "AtlasSecrets", dependencies: ["CLibPQ", "CCrypto", "CCurl"]),
        // The Atlas simulator used by tests, the demo and dry runs.
        .target(name: "AtlasSim", dependencies: ["AtlasSecrets"]),

        .executableTarget(name: "atlas-secrets", dependencies: ["AtlasSecrets"]),
        .executableTarget(name: "atlas-sim", dependencies: ["AtlasSim"]),

        .testTarget(name: "AtlasSecretsTests", dependencies: ["AtlasSecrets", "AtlasSim"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["AtlasSecrets", "AtlasSim", "atlas-secrets", "atlas-sim"]
        ),
    ]
)

// Upcoming language features, on for every target.
for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))  // SE-0335: `any P` spelled out
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))  // SE-0409: imports are internal unless public
    target.swiftSettings = settings
}
