import AtlasSecrets
import Foundation

/// The six service-account operations under `/api/atlas/v2`, validated against the OpenAPI spec.
extension AtlasSimulator {
    enum Route {
        case listAccounts, createAccount, getAccount, deleteAccount, createSecret, deleteSecret
    }

    /// Maps path segments after `/api/atlas/v2/` to the routes allowed there, by method.
    static func routes(for s: [String]) -> [String: Route]? {
        guard s.count >= 3, s[0] == "orgs", s[2] == "serviceAccounts" else { return nil }
        switch s.count {
        case 3: return ["GET": .listAccounts, "POST": .createAccount]
        case 4: return ["GET": .getAccount, "DELETE": .deleteAccount]
        case 5 where s[4] == "secrets": return ["POST": .createSecret]
        case 6 where s[4] == "secrets": return ["DELETE": .deleteSecret]
        default: return nil
        }
    }

    func handleAtlas(_ request: SimHTTPRequest) -> SimHTTPResponse {
        let rest = request.path.dropFirst("/api/atlas/v2/".count)
        let segments = rest.split(separator: "/", omittingEmptySubsequences: false).map {
            String($0).removingPercentEncoding ?? String($0)
        }
        guard let routes = AtlasSimulator.routes(for: segments) else {
            return Reply.error(404, SimErrorCode.resourceNotFound, "There is no resource at \(request.path).").render()
        }
        guard let route = routes[request.method] else {
            var reply = Reply.error(405, SimErrorCode.methodNotAllowed, "\(request.method) is not allowed on \(request.path).")
            reply.headers.append(("Allow", routes.keys.sorted().joined(separator: ", ")))
            return reply.render()
        }
        let principal: String
        switch authenticate(request) {
        case let .failure(reply): return reply.render()
        case let .success(org): principal = org
        }
        let orgId = segments[1]
        let now = SimClock.now()
        var rateHeaders: [(name: String, value: String)] = []
        if AtlasIdentifier.isOrgId(orgId), let admitted = state.withLock({ $0.admit(orgId: orgId, now: now) }) {
            let (style429, headers) = state.withLock { ($0.rateLimits?.style429 ?? true, $0.rateLimits?.headers ?? .all) }
            if headers == .all {
                rateHeaders = [("RateLimit-Limit", String(admitted.limit)), ("RateLimit-Remaining", String(admitted.remaining))]
            }
            if !admitted.ok {
                var reply = Reply.error(style429 ? 429 : 400, SimErrorCode.rateLimited, "Too many requests for organization \(orgId); retry after \(admitted.retryAfter) s.")
                reply.headers = (headers == .none ? [] : [("Retry-After", String(admitted.retryAfter))]) + rateHeaders
                return reply.render()
            }
        }
        var envelope = false
        var pretty = false
        for name in ["envelope", "pretty"] {
            guard let v = request.queryValue(name) else { continue }
            guard v == "true" || v == "false" else {
                return Reply.error(400, SimErrorCode.invalidParameter, "Query parameter \(name) must be true or false, not \(v).").render()
            }
            if name == "envelope" { envelope = v == "true" } else { pretty = v == "true" }
        }
        var reply = atlasOperation(route, request, segments, principal: principal)
        reply.headers.append(contentsOf: rateHeaders)
        if reply.status == -1 { return .dropped }
        return reply.render(envelope: envelope, pretty: pretty)
    }

    /// Validation in the order a client meets it, then the fault decision, then the operation.
    private func atlasOperation(_ route: Route, _ request: SimHTTPRequest, _ segments: [String], principal: String) -> Reply {
        guard request.header("Accept") == atlasMediaType else {
            let got = request.header("Accept").map { "\"\($0)\"" } ?? "no Accept header"
            return Reply.error(406, SimErrorCode.invalidVersionDate, "Invalid API version: the Accept header must be \(atlasMediaType), got \(got).")
        }
        if request.method == "POST" {
            let type = request.header("Content-Type")?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard type == atlasMediaType else {
                return Reply.error(415, SimErrorCode.unsupportedMediaType, "The request body must be \(atlasMediaType), got \(type.map { "\"\($0)\"" } ?? "no Content-Type").")
            }
        }
        let orgId = segments[1]
        guard AtlasIdentifier.isOrgId(orgId) else { return badParameter("orgId", orgId, "^([a-f0-9]{24})$") }
        if segments.count >= 4, !AtlasIdentifier.isClientId(segments[3]) {
            return badParameter("clientId", segments[3], "^mdb_sa_id_[a-fA-F\\d]{24}$")
        }
        if segments.count == 6, !AtlasIdentifier.isSecretId(segments[5]) {
            return badParameter("secretId", segments[5], "^([a-f0-9]{24})$")
        }
        if orgId != principal {
            let exists = state.withLock { $0.orgs[orgId] != nil }
            return exists
                ? Reply.error(403, SimErrorCode.forbidden, "The credential is not authorized for organization \(orgId).")
                : Reply.error(404, SimErrorCode.resourceNotFound, "No organization with ID \(orgId) exists.")
        }
        let clientId = segments.count >= 4 ? segments[3] : nil
        let fault = state.withLock {
            $0.decideFault(method: request.method, path: request.path, orgId: orgId, isCreateSecret: route == .createSecret)
        }
        if let fault {
            AtlasSimulator.sleep(ms: fault.latencyMs)
            if !fault.after, fault.status != nil || fault.dropConnection {
                return faultReply(fault, orgId: orgId)
            }
        }
        let strikesAfter = fault.map { $0.after && ($0.status != nil || $0.dropConnection) } ?? false
        if route == .createSecret { state.withLock { $0.counters.createSecret += 1 } }
        let result: Reply
        switch route {
        case .listAccounts: result = listAccounts(orgId, request)
        case .createAccount: result = createAccount(orgId, request)
        case .getAccount: result = getAccount(orgId, clientId!)
        case .deleteAccount: result = deleteAccount(orgId, clientId!)
        case .createSecret: result = createSecret(orgId, clientId!, request, afterFailure: strikesAfter)
        case .deleteSecret: result = deleteSecret(orgId, clientId!, segments[5])
        }
        guard strikesAfter, let fault else { return result }
        guard (200..<300).contains(result.status) else {
            if let id = fault.ruleId { state.withLock { $0.refund(ruleId: id) } }
            return result
        }
        return faultReply(fault, orgId: orgId)
    }

    /// The injected failure as ApiError (or a dropped connection: status -1).
    func faultReply(_ fault: FaultAction, orgId: String?) -> Reply {
        let now = SimClock.now()
        let limit = state.withLock { s -> Int in
            s.counters.faultsInjected += 1
            if let orgId, let after = fault.retryAfter { s.retryAfterUntil[orgId] = now + Double(after) }
            return Int(s.rateLimits?.capacity ?? 100)
        }
        if fault.dropConnection { return Reply(status: -1) }
        let status = fault.status ?? 500
        let defaultCode = switch status {
        case 429: SimErrorCode.rateLimited
        case 503: SimErrorCode.serviceUnavailable
        case 400: SimErrorCode.validationError
        case 401: SimErrorCode.unauthorized
        case 403: SimErrorCode.forbidden
        case 404: SimErrorCode.resourceNotFound
        default: SimErrorCode.unexpectedError
        }
        let code = fault.errorCode ?? defaultCode
        var reply = Reply.error(status, code, "Injected by atlas-sim.")
        if status == 429 {
            reply.headers = [("Retry-After", String(fault.retryAfter ?? 1)), ("RateLimit-Limit", String(limit)), ("RateLimit-Remaining", "0")]
        } else if let after = fault.retryAfter {
            reply.headers = [("Retry-After", String(after))]
        }
        return reply
    }

    /// Overload used by the OAuth endpoints: rendered, nil operation outcome.
    func faultReply(_ fault: FaultAction, orgId: String?, operationSucceeded: Bool?) -> SimHTTPResponse {
        let reply = faultReply(fault, orgId: orgId)
        return reply.status == -1 ? .dropped : reply.render()
    }

    private func badParameter(_ name: String, _ value: String, _ pattern: String) -> Reply {
        Reply.error(400, SimErrorCode.invalidParameter, "Invalid parameter \(name): \"\(value)\" does not match \(pattern).")
    }

    private func notFound(_ what: String) -> Reply { Reply.error(404, SimErrorCode.resourceNotFound, what) }

    // MARK: Body validation

    /// The body as a JSON object with only `allowed` keys, or the 400 to answer.
    private func bodyObject(_ request: SimHTTPRequest, allowed: Set<String>) -> Result<JSON, Reply> {
        guard !request.body.isEmpty else { return .failure(Reply.error(400, SimErrorCode.validationError, "A request body is required.")) }
        guard let json = JSON.parse(request.body) else {
            return .failure(Reply.error(400, SimErrorCode.invalidJSON, "The request body is not valid JSON."))
        }
        guard case .object = json else { return .failure(Reply.error(400, SimErrorCode.invalidJSON, "The request body must be a JSON object.")) }
        if let unknown = json.keys.first(where: { !allowed.contains($0) }) {
            return .failure(Reply.error(400, SimErrorCode.invalidAttribute, "Invalid attribute \(unknown) specified.",
                fields: [(unknown, "not a field of this request")]))
        }
        return .success(json)
    }

    /// Checks `secretExpiresAfterHours`: required integer in 8...8760.
    private func hoursViolation(_ json: JSON) -> String? {
        let range = JobRequest.expiryHoursRange
        guard let value = json["secretExpiresAfterHours"], value != .null else { return "secretExpiresAfterHours is required." }
        guard let hours = value.intValue else { return "secretExpiresAfterHours must be an integer." }
        guard range.contains(hours) else {
            return "secretExpiresAfterHours must be between \(range.lowerBound) and \(range.upperBound) hours, got \(hours)."
        }
        return nil
    }

    private static let roles: Set = [
        "ORG_MEMBER", "ORG_READ_ONLY", "ORG_BILLING_ADMIN", "ORG_BILLING_READ_ONLY",
        "ORG_STREAM_PROCESSING_ADMIN", "ORG_GROUP_CREATOR", "ORG_OWNER",
    ]

    private static func textViolation(_ json: JSON, _ field: String, max: Int) -> String? {
        guard let v = json[field], v != .null else { return "\(field) is required." }
        guard let s = v.stringValue else { return "\(field) must be a string." }
        guard (1...max).contains(s.count) else { return "\(field) must be 1 to \(max) characters." }
        let ok = s.allSatisfy { $0.isLetter || $0.isNumber || "-_.,' ".contains($0) }
        return ok ? nil : "\(field) may hold only letters, digits, spaces and -_.,'"
    }

    // MARK: Operations

    private func listAccounts(_ orgId: String, _ request: SimHTTPRequest) -> Reply {
        var itemsPerPage = 100
        var pageNum = 1
        var includeCount = true
        if let v = request.queryValue("itemsPerPage") {
            guard let n = Int(v), (1...500).contains(n) else {
                return Reply.error(400, SimErrorCode.invalidParameter, "Invalid parameter itemsPerPage: must be an integer between 1 and 500, got \(v).")
            }
            itemsPerPage = n
        }
        if let v = request.queryValue("pageNum") {
            guard let n = Int(v), n >= 1 else {
                return Reply.error(400, SimErrorCode.invalidParameter, "Invalid parameter pageNum: must be an integer of at least 1, got \(v).")
            }
            pageNum = n
        }
        for name in ["includeCount", "includeSystemManaged"] {
            guard let v = request.queryValue(name) else { continue }
            guard v == "true" || v == "false" else {
                return Reply.error(400, SimErrorCode.invalidParameter, "Query parameter \(name) must be true or false, not \(v).")
            }
            if name == "includeCount" { includeCount = v == "true" }
        }
        let now = SimClock.seconds()
        let (page, total) = state.withLock { s -> ([JSON], Int) in
            let ids = s.orgs[orgId]?.accountIds ?? []
            let start = min(ids.count, (pageNum - 1) * itemsPerPage)
            let slice = ids[start..<min(ids.count, start + itemsPerPage)]
            return (slice.compactMap { s.accounts[$0]?.atlasJSON(now: now) }, ids.count)
        }
        var pairs: [(String, JSON)] = [
            ("links", [["href": .string(baseURL + request.target), "rel": "self"]]),
            ("results", .array(page)),
        ]
        if includeCount { pairs.append(("totalCount", .int(total))) }
        return Reply(status: 200, body: .object(pairs))
    }

    private func createAccount(_ orgId: String, _ request: SimHTTPRequest) -> Reply {
        let json: JSON
        switch bodyObject(request, allowed: ["name", "description", "roles", "secretExpiresAfterHours"]) {
        case let .failure(reply): return reply
        case let .success(j): json = j
        }
        var fields: [(field: String, description: String)] = []
        if let v = AtlasSimulator.textViolation(json, "name", max: 64) { fields.append(("name", v)) }
        if let v = AtlasSimulator.textViolation(json, "description", max: 250) { fields.append(("description", v)) }
        var roles: [String] = []
        if case let .array(items)? = json["roles"], !items.isEmpty {
            for item in items {
                guard let r = item.stringValue, AtlasSimulator.roles.contains(r) else {
                    fields.append(("roles", "roles must hold only \(AtlasSimulator.roles.sorted().joined(separator: ", ")), got \(item.text)."))
                    break
                }
                if !roles.contains(r) { roles.append(r) }
            }
        } else {
            fields.append(("roles", "roles is required: a non-empty array of organization roles."))
        }
        if let v = hoursViolation(json) { fields.append(("secretExpiresAfterHours", v)) }
        if !fields.isEmpty {
            return Reply.error(400, SimErrorCode.validationError, fields.map(\.description).joined(separator: " "), fields: fields)
        }
        let now = SimClock.seconds()
        let hours = json["secretExpiresAfterHours"]!.intValue!
        let account = AccountRecord(
            orgId: orgId, clientId: "mdb_sa_id_" + SimRandom.objectId(), name: json["name"]!.stringValue!,
            description: json["description"]!.stringValue!, roles: roles, createdAt: now)
        let value = SimRandom.secretValue()
        let secretId = SimRandom.objectId()
        let created: SecretRecord? = state.withLock { s in
            guard (s.orgs[orgId]?.accountIds.count ?? 0) < 200, s.addAccount(account) else { return nil }
            guard case let .created(secret) = s.createSecret(clientId: account.clientId, hours: hours, now: now, value: value, id: secretId, afterFailure: false) else { return nil }
            return secret
        }
        guard let created else {
            return Reply.error(400, SimErrorCode.serviceAccountLimitExceeded, "Organization \(orgId) already has 200 service accounts.")
        }
        var body = account.atlasJSON(now: now)
        if case var .object(pairs) = body, let i = pairs.firstIndex(where: { $0.0 == "secrets" }) {
            pairs[i].1 = [created.atlasJSON(withValue: true, includeMasked: !configuration.omitMaskedSecretValue)]
            body = .object(pairs)
        }
        return Reply(status: 201, body: body)
    }

    private func getAccount(_ orgId: String, _ clientId: String) -> Reply {
        let now = SimClock.seconds()
        let body = state.withLock { s in s.accounts[clientId].flatMap { $0.orgId == orgId ? $0.atlasJSON(now: now) : nil } }
        guard let body else { return notFound("No service account with client ID \(clientId) exists in organization \(orgId).") }
        return Reply(status: 200, body: body)
    }

    private func deleteAccount(_ orgId: String, _ clientId: String) -> Reply {
        let found = state.withLock { s -> Bool in
            guard s.accounts[clientId]?.orgId == orgId else { return false }
            s.deleteAccount(clientId: clientId)
            return true
        }
        return found ? Reply(status: 204) : notFound("No service account with client ID \(clientId) exists in organization \(orgId).")
    }

    private func createSecret(_ orgId: String, _ clientId: String, _ request: SimHTTPRequest, afterFailure: Bool) -> Reply {
        let json: JSON
        switch bodyObject(request, allowed: ["secretExpiresAfterHours"]) {
        case let .failure(reply): return reply
        case let .success(j): json = j
        }
        if let v = hoursViolation(json) {
            return Reply.error(400, SimErrorCode.validationError, v, fields: [("secretExpiresAfterHours", v)])
        }
        let hours = json["secretExpiresAfterHours"]!.intValue!
        let now = SimClock.seconds()
        let value = SimRandom.secretValue()
        let id = SimRandom.objectId()
        let outcome = state.withLock { s -> SimState.CreateSecretOutcome in
            guard s.accounts[clientId]?.orgId == orgId else { return .noAccount }
            return s.createSecret(clientId: clientId, hours: hours, now: now, value: value, id: id, afterFailure: afterFailure)
        }
        switch outcome {
        case .noAccount:
            return notFound("No service account with client ID \(clientId) exists in organization \(orgId).")
        case .limit:
            return Reply.error(400, SimErrorCode.secretLimitExceeded, "Service account \(clientId) already has the maximum of 2 secrets.")
        case let .created(secret):
            return Reply(status: 201, body: secret.atlasJSON(withValue: true, includeMasked: !configuration.omitMaskedSecretValue))
        }
    }

    private func deleteSecret(_ orgId: String, _ clientId: String, _ secretId: String) -> Reply {
        let now = SimClock.seconds()
        let result = state.withLock { s -> Int in
            guard s.accounts[clientId]?.orgId == orgId else { return 1 }
            return s.revokeSecret(clientId: clientId, secretId: secretId, now: now) ? 0 : 2
        }
        switch result {
        case 0: return Reply(status: 204)
        case 1: return notFound("No service account with client ID \(clientId) exists in organization \(orgId).")
        default: return notFound("No secret with ID \(secretId) exists for service account \(clientId).")
        }
    }
}
