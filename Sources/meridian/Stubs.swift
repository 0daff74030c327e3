struct UpCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "up") }
struct BenchCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "bench") }
import ArgumentParser
