using System.Globalization;
using System.Text.RegularExpressions;

namespace PolicyGrid.Core.Documents;

/// <summary>
/// Amounts of CPU and memory as Kubernetes writes them ("500m", "512Mi", "1Gi", "1e9", "2"): a non-negative decimal
/// number and an optional suffix, binary (Ki, Mi, Gi, Ti, Pi, Ei), decimal (n, u, m, k, M, G, T, P, E) or an exponent.
/// Jobs hand a policy's <c>resource_estimates.cpu</c> and <c>memory</c> to Kubernetes as such quantities.
/// </summary>
public static partial class QuantityNotation
{
    /// <summary>The amount <paramref name="text"/> stands for, in cores or bytes; false when it is no quantity.</summary>
    public static bool TryParse(string text, out double amount)
    {
        amount = 0;
        var match = Pattern().Match(text);
        if (!match.Success || !double.TryParse(match.Groups["number"].Value, NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
            return false;
        var suffix = match.Groups["suffix"].Value;
        double scale;
        if (suffix.Length > 1 && suffix[0] is 'e' or 'E')
        {
            if (!int.TryParse(suffix[1..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var exponent)) return false;
            scale = Math.Pow(10, exponent);
        }
        else
        {
            scale = suffix switch
            {
                "" => 1,
                "Ki" => 1L << 10, "Mi" => 1L << 20, "Gi" => 1L << 30, "Ti" => 1L << 40, "Pi" => 1L << 50, "Ei" => 1L << 60,
                "n" => 1e-9, "u" => 1e-6, "m" => 1e-3, "k" => 1e3, "M" => 1e6, "G" => 1e9, "T" => 1e12, "P" => 1e15, "E" => 1e18,
                _ => double.NaN,
            };
        }
        amount = number * scale;
        return double.IsFinite(amount);
    }

    [GeneratedRegex(@"^(?<number>\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$", RegexOptions.CultureInvariant)]
    private static partial Regex Pattern();
}
