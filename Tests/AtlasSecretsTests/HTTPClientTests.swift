import Foundation
import Testing
@testable import AtlasSecrets

@Suite struct HTTPClientTests {
    @Test func sendsMethodHeadersAndBodyAndReadsTheResponse() throws {
        let server = LocalHTTPServer { request, _ in
            .respond(status: 201, headers: [("Content-Type", "application/json"), ("X-Echo", request.method)], body: #"{"ok":true}"#)
        }
        defer { server.stop() }
        let http = HTTPClient()
        let body = Array(#"{"secretExpiresAfterHours":8}"#.utf8)
        let response = try http.send(HTTPRequest(
            method: "POST", url: server.baseURL + "/api/x?y=1",
            headers: [("Accept", atlasMediaType), ("Content-Type", atlasMediaType), ("X-Empty", "")], body: body))
        #expect(response.status == 201)
        #expect(response.header("content-type") == "application/json")
        #expect(response.header("X-ECHO") == "POST")
        #expect(String(decoding: response.body, as: UTF8.self) == #"{"ok":true}"#)

        let seen = try #require(server.requests.first)
        #expect(seen.method == "POST" && seen.target == "/api/x?y=1")
        #expect(seen.body == body)
        #expect(seen.header("Accept") == atlasMediaType)
        #expect(seen.header("Content-Type") == atlasMediaType)
        #expect(seen.header("X-Empty") == "")
        #expect(seen.header("Expect") == nil)
        let agent = try #require(seen.header("User-Agent"))
        #expect(agent.hasPrefix("atlas-secrets/\(HTTPClient.productVersion) (libcurl/"))
    }

    @Test func keepsOneConnectionAliveAcrossMethods() throws {
        let server = LocalHTTPServer { request, _ in
            request.method == "DELETE" ? .respond(status: 204) : .respond(status: 200, body: "x")
        }
        defer { server.stop() }
        let http = HTTPClient()
        #expect(try http.send(HTTPRequest(method: "GET", url: server.baseURL + "/a")).status == 200)
        #expect(try http.send(HTTPRequest(method: "DELETE", url: server.baseURL + "/b")).status == 204)
        let post = try http.send(HTTPRequest(method: "POST", url: server.baseURL + "/c", body: []))
        #expect(post.status == 200 && post.body == Array("x".utf8))
        #expect(server.requests.map(\.method) == ["GET", "DELETE", "POST"])
        #expect(server.requests[2].header("Content-Length") == "0")
        #expect(server.connectionCount == 1)
    }

    @Test func freshConnectionForPOSTOpensOnePerPOST() throws {
        let server = LocalHTTPServer { _, _ in .respond(status: 200) }
        defer { server.stop() }
        let http = HTTPClient(configuration: .init(freshConnectionForPOST: true))
        for _ in 0..<3 { _ = try http.send(HTTPRequest(method: "POST", url: server.baseURL + "/p", body: [1])) }
        #expect(server.connectionCount == 3)
    }

    @Test func refusedConnectionIsNotSent() {
        let http = HTTPClient(configuration: .init(connectTimeout: 2))
        let error = #expect(throws: HTTPError.self) {
            try http.send(HTTPRequest(method: "POST", url: "http://127.0.0.1:\(closedLocalPort())/x", body: [1]))
        }
        #expect(error?.code == .couldNotConnect)
        #expect(error?.requestMayHaveBeenSent == false)
        #expect(error?.curlCode == 7)
    }

    @Test func slowResponseTimesOutAfterSending() {
        let server = LocalHTTPServer { _, _ in .respond(status: 200, delay: 1.5) }
        defer { server.stop() }
        let http = HTTPClient(configuration: .init(requestTimeout: 0.3))
        let error = #expect(throws: HTTPError.self) { try http.send(HTTPRequest(method: "POST", url: server.baseURL + "/slow", body: [1])) }
        #expect(error?.code == .timedOut)
        #expect(error?.requestMayHaveBeenSent == true)
        #expect(server.requests.count == 1)
    }

    @Test func closedWithoutAnswerIsConnectionLostAfterSending() {
        let server = LocalHTTPServer { _, _ in .closeWithoutResponse }
        defer { server.stop() }
        let http = HTTPClient()
        let error = #expect(throws: HTTPError.self) { try http.send(HTTPRequest(method: "POST", url: server.baseURL + "/x", body: [1])) }
        #expect(error?.code == .connectionLost)
        #expect(error?.requestMayHaveBeenSent == true)
        #expect(server.requests.count == 1)
    }

    @Test func headerInjectionIsRefusedBeforeSending() {
        let http = HTTPClient()
        let error = #expect(throws: HTTPError.self) {
            try http.send(HTTPRequest(method: "GET", url: "http://127.0.0.1:1/", headers: [("X", "a\r\nInjected: 1")]))
        }
        #expect(error?.code == .invalidRequest && error?.requestMayHaveBeenSent == false)
    }
}
