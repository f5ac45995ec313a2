import Foundation

extension RequestFile {
    /// Reads and parses request files by path (`-` reads standard input once), reporting every
    /// problem of every file, a file that cannot be read included, before anything is queued.
    ///
    /// Throws `RequestFileErrors` (exit 65). Reads whole files into memory.
    public static func load(paths: [String]) throws(RequestFileErrors) -> [ParsedRequest] {
        try load(paths: paths) { [UInt8](FileHandle.standardInput.readDataToEndOfFile()) }
    }

    /// `load(paths:)` with standard input supplied by the caller (tests).
    static func load(paths: [String], readStandardInput: () -> [UInt8]) throws(RequestFileErrors) -> [ParsedRequest] {
        var files: [(name: String, bytes: [UInt8])] = []
        var unreadable: [RequestFileError] = []
        for path in paths {
            if path == "-" {
                files.append(("-", readStandardInput()))
                continue
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                unreadable.append(RequestFileError(file: path, line: nil, message: "no such file"))
                continue
            }
            guard !isDirectory.boolValue else {
                unreadable.append(RequestFileError(file: path, line: nil, message: "is a directory, not a request file"))
                continue
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                unreadable.append(RequestFileError(file: path, line: nil, message: "cannot be read (permission denied?)"))
                continue
            }
            files.append((path, [UInt8](data)))
        }
        var errors = unreadable
        var requests: [ParsedRequest] = []
        do throws(RequestFileErrors) {
            requests = try parse(files: files)
        } catch {
            errors += error.errors
        }
        guard errors.isEmpty else { throw RequestFileErrors(errors) }
        return requests
    }
}
