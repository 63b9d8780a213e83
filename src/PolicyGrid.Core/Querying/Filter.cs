using System.Text.Json.Nodes;

namespace PolicyGrid.Core.Querying;

/// <summary>
/// A parsed Mongo-style filter. Filters are data: adapters translate this tree (never the raw
/// text) into their store's query language with parameters, and evaluate what they cannot
/// translate with <see cref="FilterNode.Matches"/>.
/// </summary>
public abstract record FilterNode
{
    /// <summary>True when the document satisfies this node (Mongo semantics, arrays match on any element).</summary>
    public bool Matches(JsonNode? document) => Matches(document, FilterBudget.Unlimited);

    /// <summary>
    /// As <see cref="Matches(JsonNode?)"/>, checking <paramref name="budget"/> before each condition: a caller's filter
    /// goes through <see cref="FilterBudget.Matches"/>, which also counts the time.
    /// </summary>
    public abstract bool Matches(JsonNode? document, FilterBudget budget);
}

/// <summary>Every child must match. The empty conjunction matches everything.</summary>
public sealed record AndFilter(IReadOnlyList<FilterNode> Children) : FilterNode
{
    public override bool Matches(JsonNode? document, FilterBudget budget) => Children.All(c => c.Matches(document, budget));
}

/// <summary>At least one child must match.</summary>
public sealed record OrFilter(IReadOnlyList<FilterNode> Children) : FilterNode
{
    public override bool Matches(JsonNode? document, FilterBudget budget) => Children.Any(c => c.Matches(document, budget));
}

public enum FieldOperator { Eq, Ne, Gt, Gte, Lt, Lte, In, Nin, Regex, Exists, All, Size, ElemMatch, Not }

/// <summary>
/// One operator applied to a dotted path. <see cref="Operand"/> is the operator's JSON argument;
/// for <see cref="FieldOperator.ElemMatch"/> and <see cref="FieldOperator.Not"/> the argument is
/// also parsed into <see cref="Nested"/>.
/// </summary>
public sealed record FieldFilter(string Path, FieldOperator Operator, JsonNode? Operand, FilterNode? Nested = null, string RegexOptions = "") : FilterNode
{
    public override bool Matches(JsonNode? document, FilterBudget budget) => FieldMatcher.Matches(this, document, budget);
}
