import Testing
@testable import AtlasSecrets

@Suite struct IdentifierTests {
    @Test func orgAndClientIdShapes() {
        #expect(AtlasIdentifier.isOrgId("4888442a3354817a7320eb61"))
        #expect(!AtlasIdentifier.isOrgId("4888442A3354817a7320eb61"))
        #expect(!AtlasIdentifier.isOrgId("4888442a3354817a7320eb6"))
        #expect(AtlasIdentifier.isClientId("mdb_sa_id_4888442A3354817a7320eb61"))
        #expect(!AtlasIdentifier.isClientId("mdb_sa_id_4888442a3354817a7320eb6g"))
        #expect(!AtlasIdentifier.isClientId("4888442a3354817a7320eb61"))
    }
}
