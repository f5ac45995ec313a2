import Foundation

extension CLI.Context {
    /// Prints the plaintext secret of a succeeded job: the one way to read it.
    func reveal(_ o: RevealOptions) throws {
        let key = try key(forReading: true)
        let found = try withDatabase { conn in try JobQueries.sealedSecret(conn, id: o.jobID) }
        guard let found else { throw CommandFailure("job \(o.jobID) does not exist", .dataError) }
        guard found.state == .succeeded, let sealed = found.sealed else {
            throw CommandFailure("job \(o.jobID) is \(found.state.rawValue): only a succeeded job has a secret", .dataError)
        }
        guard found.keyId == key.id else {
            throw CommandFailure("job \(o.jobID)'s secret is encrypted with key \(found.keyId ?? "?"), but ATLAS_SECRETS_KEY_FILE (\(environment["ATLAS_SECRETS_KEY_FILE"] ?? "")) holds key \(key.id)", .dataError)
        }
        do {
            Console.out(try SecretBox.open(sealed, key: key, associatedData: JobProcessor.associatedData(jobId: o.jobID)))
        } catch {
            throw CommandFailure("job \(o.jobID)'s secret does not decrypt with key \(key.id): \(error)", .dataError)
        }
    }

    /// Writes a new key file (mode 0600); never overwrites.
    func keygen(_ o: KeygenOptions) throws {
        do {
            let key = try SecretKey.generate(path: o.path)
            Console.out("wrote a new AES-256 key to \(o.path) (mode 0600, key id \(key.id)); set ATLAS_SECRETS_KEY_FILE=\(o.path)")
        } catch {
            throw CommandFailure("\(error)", .dataError)
        }
    }
}
