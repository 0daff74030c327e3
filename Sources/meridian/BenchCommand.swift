struct BenchCommand: ParsableCommand { static let configuration = CommandConfiguration(commandName: "bench") }
import ArgumentParser
