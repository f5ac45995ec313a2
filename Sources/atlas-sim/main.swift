// atlas-sim: flags -> seed -> start -> wait for SIGINT/SIGTERM. The logic lives in AtlasSim.
import AtlasSim
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("atlas-sim: \(message)\n".utf8))
    exit(code)
}

let options: SimulatorCommandLine
do {
    options = try SimulatorCommandLine.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail(error.message, code: 64)
}
if options.help {
    print(SimulatorCommandLine.usage, terminator: "")
    exit(0)
}

let simulator = AtlasSimulator(configuration: options.configuration)
for file in options.seedFiles {
    do {
        let (added, skipped) = try simulator.seed(fromFile: file)
        if skipped > 0 || options.configuration.verbose {
            FileHandle.standardError.write(Data("atlas-sim: \(file): \(added) accounts seeded, \(skipped) lines skipped\n".utf8))
        }
    } catch {
        fail("\(error)", code: 66)
    }
}
if options.seedOrgs > 0 { simulator.seed(orgs: options.seedOrgs, accountsPerOrg: options.accountsPerOrg) }
if let path = options.credentialsOut {
    do { try simulator.writeCredentials(to: path) } catch { fail("\(error)", code: 73) }
}

signal(SIGINT, SIG_IGN)
signal(SIGTERM, SIG_IGN)
signal(SIGPIPE, SIG_IGN)
let done = DispatchSemaphore(value: 0)
let signalQueue = DispatchQueue(label: "atlas-sim.signals")
let sources = [SIGINT, SIGTERM].map { sig in
    let source = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
    source.setEventHandler { @Sendable in done.signal() }
    source.resume()
    return source
}

let port: Int
do { port = try simulator.start() } catch { fail("\(error)", code: 69) }
if let path = options.portFile {
    do { try "\(port)\n".write(toFile: path, atomically: true, encoding: .utf8) } catch { fail("cannot write \(path): \(error)", code: 73) }
}
print("atlas-sim listening on http://127.0.0.1:\(port)")
fflush(nil)

done.wait()
simulator.stop()
withExtendedLifetime(sources) {}
exit(0)
