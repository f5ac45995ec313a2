import Testing
@testable import AtlasSecrets

@Suite struct DigestTests {
    /// RFC 7616 section 3.9.1: the same challenge with MD5 and with SHA-256.
    static let rfc7616Header = """
        Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, \
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", \
        Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, \
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
        """
    static let rfc7616Cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"

    @Test func rfc7616ExampleMD5AndSHA256() throws {
        let challenges = AuthChallenge.parse([Self.rfc7616Header])
        #expect(challenges.count == 2)
        let sha = try #require(DigestChallenge(challenge: challenges[0]))
        let md5 = try #require(DigestChallenge(challenge: challenges[1]))
        #expect(sha.algorithm == .sha256 && md5.algorithm == .md5)
        #expect(sha.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        let args = (username: "Mufasa", password: "Circle of Life", method: "GET", uri: "/dir/index.html")
        #expect(md5.response(username: args.username, password: args.password, method: args.method, uri: args.uri, nc: 1, cnonce: Self.rfc7616Cnonce)
            == "8ca523f5e9506fed4657c9700eebdbec")
        #expect(sha.response(username: args.username, password: args.password, method: args.method, uri: args.uri, nc: 1, cnonce: Self.rfc7616Cnonce)
            == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        // The strongest is chosen when both are offered.
        #expect(DigestChallenge.select(from: challenges)?.algorithm == .sha256)
    }

    @Test func rfc2617ExampleMD5() throws {
        let header = """
            Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", \
            opaque="5ccc069c403ebaf9f0171e9517f40e41"
            """
        let challenge = try #require(DigestChallenge.select(from: AuthChallenge.parse([header])))
        #expect(challenge.algorithm == .md5 && !challenge.isSession && challenge.qopAuth)
        let auth = challenge.authorization(
            username: "Mufasa", password: "Circle Of Life", method: "GET", uri: "/dir/index.html", nc: 1, cnonce: "0a4f113b")
        #expect(auth.contains("response=\"6629fae49393a05397450978507c4ef1\""))
        #expect(auth.hasPrefix("Digest username=\"Mufasa\", realm=\"testrealm@host.com\""))
        #expect(auth.contains("qop=auth, nc=00000001, cnonce=\"0a4f113b\""))
        #expect(auth.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""))
        #expect(auth.contains("uri=\"/dir/index.html\""))
    }

    @Test func sessionVariantHashesCnonceIntoHA1() throws {
        let challenge = try #require(DigestChallenge.select(from: AuthChallenge.parse([
            #"Digest realm="r", nonce="n", qop="auth", algorithm=MD5-sess"#,
        ])))
        #expect(challenge.isSession)
        let ha1 = Hashing.hex(Hashing.hex("u:r:p", .md5) + ":n:c", .md5)
        let ha2 = Hashing.hex("POST:/x", .md5)
        let expected = Hashing.hex("\(ha1):n:0000000a:c:auth:\(ha2)", .md5)
        #expect(challenge.response(username: "u", password: "p", method: "POST", uri: "/x", nc: 10, cnonce: "c") == expected)
        #expect(challenge.authorization(username: "u", password: "p", method: "POST", uri: "/x", nc: 10, cnonce: "c").contains("algorithm=MD5-sess"))
    }

    @Test func parsesQuotedCommasEscapesAndSeveralChallenges() {
        let parsed = AuthChallenge.parse([
            #"Basic realm="a, b", Digest realm="MMS Public API", domain="", nonce="x,y\"z", algorithm=MD5, qop="auth", stale=false"#,
            "Bearer realm=\"api\", error=invalid_token",
        ])
        #expect(parsed.map(\.scheme) == ["Basic", "Digest", "Bearer"])
        #expect(parsed[0].parameters == ["realm": "a, b"])
        #expect(parsed[1].parameters["nonce"] == "x,y\"z")
        #expect(parsed[1].parameters["domain"] == "")
        #expect(parsed[1].parameters["stale"] == "false")
        #expect(parsed[2].parameters["error"] == "invalid_token")
        #expect(DigestChallenge.select(from: parsed)?.realm == "MMS Public API")
    }

    @Test func skipsUnusableChallenges() {
        // auth-int only, unknown algorithm, userhash: none can be answered.
        let parsed = AuthChallenge.parse([
            #"Digest realm="r", nonce="n", qop="auth-int""#,
            #"Digest realm="r", nonce="n", algorithm=SHA-512-256"#,
            #"Digest realm="r", nonce="n", userhash=true"#,
            #"Basic realm="r""#,
        ])
        #expect(parsed.count == 4)
        #expect(DigestChallenge.select(from: parsed) == nil)
        // No qop: RFC 2069 form, no nc/cnonce sent.
        let legacy = DigestChallenge.select(from: AuthChallenge.parse([#"Digest realm="r", nonce="n""#]))
        #expect(legacy?.qopAuth == false)
        #expect(legacy?.authorization(username: "u", password: "p", method: "GET", uri: "/", nc: 1, cnonce: "c").contains("nc=") == false)
    }

    @Test func staleFlagAndQuotingInAuthorization() throws {
        let challenge = try #require(DigestChallenge.select(from: AuthChallenge.parse([#"Digest realm="r", nonce="n2", qop="auth", stale=TRUE"#])))
        #expect(challenge.stale)
        let auth = challenge.authorization(username: #"we"ird"#, password: "p", method: "GET", uri: "/", nc: 255, cnonce: "c")
        #expect(auth.contains(#"username="we\"ird""#))
        #expect(auth.contains("nc=000000ff"))
        // Our own header parses back with the same grammar.
        let back = AuthChallenge.parse([auth])
        #expect(back.first?.parameters["username"] == #"we"ird"#)
    }
}
