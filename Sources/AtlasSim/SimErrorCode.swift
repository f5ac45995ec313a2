/// The ApiError `errorCode`s the simulator answers with, in one place.
///
/// Atlas documents no errorCode specific to the service-account endpoints; the ones marked
/// "unconfirmed" are our best guess and live only here so they are easy to change.
public enum SimErrorCode {
    /// 406 on a missing or unknown `Accept` version (seen in the wild).
    public static let invalidVersionDate = "INVALID_VERSION_DATE"
    /// 415 on a body without the versioned media type (unconfirmed).
    public static let unsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
    /// 400 on a path or query parameter that breaks its pattern or range.
    public static let invalidParameter = "INVALID_PARAMETER"
    /// 400 on a body field that is missing, mistyped or out of bounds (the spec's example code).
    public static let validationError = "VALIDATION_ERROR"
    /// 400 on a body field the schema does not have.
    public static let invalidAttribute = "INVALID_ATTRIBUTE"
    /// 400 on a body that is not JSON.
    public static let invalidJSON = "INVALID_JSON"
    /// 404 on an unknown org, account, secret or route.
    public static let resourceNotFound = "RESOURCE_NOT_FOUND"
    /// 405 on a known path with another method (unconfirmed).
    public static let methodNotAllowed = "METHOD_NOT_ALLOWED"
    /// 400 on a third live secret (unconfirmed: the real code is undocumented).
    public static let secretLimitExceeded = "SERVICE_ACCOUNT_SECRET_LIMIT_EXCEEDED"
    /// 400 on a 201st service account in an org (unconfirmed).
    public static let serviceAccountLimitExceeded = "SERVICE_ACCOUNT_LIMIT_EXCEEDED"
    /// 401 on missing, bad, expired or revoked credentials (unconfirmed).
    public static let unauthorized = "UNAUTHORIZED"
    /// 403 when a credential is used on another organization (unconfirmed).
    public static let forbidden = "USER_UNAUTHORIZED"
    /// 429 (or 400) from a rate limit.
    public static let rateLimited = "RATE_LIMITED"
    /// 500 injected failures.
    public static let unexpectedError = "UNEXPECTED_ERROR"
    /// 503 injected failures.
    public static let serviceUnavailable = "SERVICE_UNAVAILABLE"
}
