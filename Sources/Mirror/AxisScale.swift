import Foundation

/// The value axis of a chart: from 0 up to a round maximum in round steps (1, 2, 2.5 or 5 × 10ⁿ),
/// each tick labelled with as many decimals as the step needs and no more, so no two labels read
/// the same (steps of 0.0625 printed with one decimal gave 0, 0.1, 0.1, 0.2, 0.2).
public struct AxisScale: Sendable, Equatable {
    public let step: Double
    public let maximum: Double
    /// The divisor of the labels (1, 1000 for "k", 1,000,000 for "M").
    let unit: Double
    let decimals: Int

    /// At most `ticks` steps above 0 cover `value` (values that are not finite or not positive
    /// give the axis 0…1).
    public init(covering value: Double, ticks: Int = 4) {
        let v = value.isFinite && value > 0 ? min(value, 1e300) : 1
        let raw = v / Double(max(1, ticks))
        let exponent = floor(log10(raw))
        let p = pow(10, exponent)
        let mantissa = [1.0, 2, 2.5, 5, 10].first { $0 * p >= raw * (1 - 1e-12) } ?? 10
        step = mantissa * p
        maximum = max(step, (v / step * (1 - 1e-12)).rounded(.up) * step)
        unit = maximum >= 1_000_000 ? 1_000_000 : maximum >= 10_000 ? 1000 : 1
        // Decimals of the step in the label's unit: 2.5 × 10ⁿ needs one more than 10ⁿ.
        let e = Int(floor(log10(step / unit) + 1e-9))
        decimals = max(0, -e + (mantissa == 2.5 ? 1 : 0))
    }

    /// 0, step, 2 × step, … up to the maximum.
    public var ticks: [Double] {
        let n = Int((maximum / step).rounded())
        return (0...n).map { Double($0) * step }
    }

    public func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        let suffix = unit == 1_000_000 ? "M" : unit == 1000 ? "k" : ""
        return String(format: "%.\(decimals)f", v / unit) + suffix
    }
}
