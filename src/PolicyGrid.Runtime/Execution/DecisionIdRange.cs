using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Runtime.Execution;

/// <summary>
/// The ids a decision matching a filter can have, from the filter's conditions on <c>at</c>: ids from
/// <see cref="From"/> (inclusive) to <see cref="Below"/> (exclusive), null for no bound. A decision's id starts with
/// the 12 hex digits of its time in Unix milliseconds (<see cref="DecisionLog.NewId"/>, clamped at 0) and its
/// <c>at</c> is that time as <see cref="Timestamps.Format"/> writes it (truncated to the same millisecond); retention
/// already deletes by that prefix. So a store can read only the ids in the range, and answer exactly what reading
/// every decision would.
/// </summary>
public sealed record DecisionIdRange(string? From, string? Below)
{
    public static readonly DecisionIdRange Everything = new(null, null);

    /// <summary>No id at all (<c>at</c> bounds no stored time satisfies, such as <c>$lt "0"</c>).</summary>
    public static readonly DecisionIdRange Nothing = new("0", "0");

    /// <summary>
    /// Ids from here on were made from a time after 1970-01-01T00:00:00.000Z, where the prefix rises with <c>at</c>;
    /// below it, every earlier time shares the prefix 0 (<see cref="DecisionLog.NewId"/>), so id order is not
    /// <c>at</c> order there.
    /// </summary>
    public const string TimeOrderedFrom = "000000000001";

    /// <summary>Characters of an id that encode its time.</summary>
    public const int TimePrefixLength = 12;

    public bool IsEverything => From is null && Below is null;

    /// <summary>
    /// The range implied by <paramref name="filter"/>: conditions on <c>at</c> ($eq, $gt, $gte, $lt, $lte, $in of strings)
    /// ANDed with the rest narrow it; an $or spans its branches. Anything else (a $not, a condition on another type)
    /// leaves it open, which is always true, only slower.
    /// </summary>
    public static DecisionIdRange For(FilterNode filter) => filter switch
    {
        AndFilter and => and.Children.Select(For).Aggregate(Everything, Intersect),
        OrFilter { Children.Count: > 0 } or => or.Children.Select(For).Aggregate(Union),
        FieldFilter { Path: "at" } field => ForAt(field),
        _ => Everything,
    };

    private static DecisionIdRange ForAt(FieldFilter field)
    {
        switch (field.Operator)
        {
            case FieldOperator.Eq when JsonValues.TryString(field.Operand, out var s):
                return Between(FirstAtOrAfter(s, inclusive: true), LastAtOrBefore(s, inclusive: true));
            case FieldOperator.In when field.Operand is JsonArray values && values.Count > 0:
                var ranges = new List<DecisionIdRange>();
                foreach (var value in values)
                {
                    // null matches a decision without "at", a regex any text: neither bounds the time.
                    if (!JsonValues.TryString(value, out var v)) return Everything;
                    ranges.Add(Between(FirstAtOrAfter(v, inclusive: true), LastAtOrBefore(v, inclusive: true)));
                }
                return ranges.Aggregate(Union);
            case FieldOperator.Gt when JsonValues.TryString(field.Operand, out var s):
                return Between(FirstAtOrAfter(s, inclusive: false), null);
            case FieldOperator.Gte when JsonValues.TryString(field.Operand, out var s):
                return Between(FirstAtOrAfter(s, inclusive: true), null);
            case FieldOperator.Lt when JsonValues.TryString(field.Operand, out var s):
                return Between(null, LastAtOrBefore(s, inclusive: false));
            case FieldOperator.Lte when JsonValues.TryString(field.Operand, out var s):
                return Between(null, LastAtOrBefore(s, inclusive: true));
            default:
                return Everything;
        }
    }

    // A millisecond bound: long.MaxValue / long.MinValue stand for "no stored time is that late / early".
    private static DecisionIdRange Between(long? firstMs, long? lastMs)
    {
        if (firstMs == long.MaxValue || lastMs == long.MinValue) return Nothing;
        if (firstMs is { } first && lastMs is { } last && first > last) return Nothing;
        return new(
            firstMs is { } f ? DecisionLog.IdPrefixAt(f) : null,
            lastMs is { } l ? DecisionLog.IdPrefixAt(Math.Max(0, l) + 1) : null);
    }

    private static readonly long EarliestMs = DateTimeOffset.MinValue.ToUnixTimeMilliseconds();
    private static readonly long LatestMs = DateTimeOffset.MaxValue.ToUnixTimeMilliseconds();

    private static string AtOf(long ms) => Timestamps.Format(DateTimeOffset.FromUnixTimeMilliseconds(ms));

    /// <summary>
    /// The first millisecond whose stored <c>at</c> is at or after (or after) <paramref name="s"/> as Core compares
    /// strings (ordinally, so "2026-01-01", "2026-01-01T02:00:00+02:00" or any other text bound exactly as Core
    /// matches them); long.MaxValue when there is none. A binary search: the stored format has fixed width, so its
    /// text rises with the time.
    /// </summary>
    private static long FirstAtOrAfter(string s, bool inclusive)
    {
        bool Satisfies(long ms) => string.CompareOrdinal(AtOf(ms), s) is var c && (inclusive ? c >= 0 : c > 0);
        if (!Satisfies(LatestMs)) return long.MaxValue;
        var (low, high) = (EarliestMs, LatestMs); // the answer lies in (low - 1, high]
        if (Satisfies(low)) return low;
        while (high - low > 1)
        {
            var middle = low + (high - low) / 2;
            if (Satisfies(middle)) high = middle;
            else low = middle;
        }
        return high;
    }

    /// <summary>The last millisecond whose stored <c>at</c> is at or before (or before) <paramref name="s"/>; long.MinValue when none is.</summary>
    private static long LastAtOrBefore(string s, bool inclusive)
    {
        // The millisecond before the first one past the bound.
        var firstPast = FirstAtOrAfter(s, inclusive: !inclusive);
        return firstPast == long.MaxValue ? LatestMs : firstPast == EarliestMs ? long.MinValue : firstPast - 1;
    }

    private static DecisionIdRange Intersect(DecisionIdRange a, DecisionIdRange b) =>
        new(Max(a.From, b.From), Min(a.Below, b.Below));

    private static DecisionIdRange Union(DecisionIdRange a, DecisionIdRange b) =>
        a.IsEmpty ? b : b.IsEmpty ? a : new(a.From is null || b.From is null ? null : Min(a.From, b.From), a.Below is null || b.Below is null ? null : Max(a.Below, b.Below));

    /// <summary>True when no id lies in the range.</summary>
    public bool IsEmpty => From is not null && Below is not null && string.CompareOrdinal(From, Below) >= 0;

    private static string? Max(string? a, string? b) => a is null ? b : b is null ? a : string.CompareOrdinal(a, b) >= 0 ? a : b;

    private static string? Min(string? a, string? b) => a is null ? b : b is null ? a : string.CompareOrdinal(a, b) <= 0 ? a : b;
}
