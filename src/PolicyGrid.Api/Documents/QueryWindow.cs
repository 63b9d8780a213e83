using System.Globalization;
using SortKey = PolicyGrid.Core.Ports.SortKey;
using System.Reflection;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;

namespace PolicyGrid.Api.Documents;

/// <summary>
/// <c>?limit=</c> (default 100, at most 1000), <c>?skip=</c> and <c>?sort=field:asc|desc[,field:dir]</c>
/// of every query endpoint, read by us so a bad value answers a 400 that names it; with the server's time budget
/// for evaluating the filter (<see cref="ApiLimits.QueryTimeBudget"/>).
/// </summary>
public sealed record QueryWindow(int Limit, int Skip, IReadOnlyList<SortKey> Sort)
{
    public TimeSpan TimeBudget { get; init; } = FilterBudget.DefaultLimit;

    /// <summary>The query string a query route reads (names compare ignoring case, as ASP.NET reads them).</summary>
    private static readonly HashSet<string> WindowParameters = new(StringComparer.OrdinalIgnoreCase) { "limit", "skip", "sort" };

    public static ValueTask<QueryWindow?> BindAsync(HttpContext context, ParameterInfo parameter)
    {
        ArgumentNullException.ThrowIfNull(context);
        // ?offset=20 or ?order_by=name, ignored, would answer the first page in store order as if it were what was asked.
        if (context.Request.Query.Keys.FirstOrDefault(k => !WindowParameters.Contains(k)) is { } unknown)
            throw Problems.BadRequest($"query parameter '{Core.Querying.JsonPath.Abbreviate(Printable(unknown))}' is not one a query takes: page and order with ?limit=, ?skip= and ?sort=field:asc|desc[,field:asc|desc]; the filter goes in the body");
        var window = Parse(context.Request.Query["limit"], context.Request.Query["skip"], context.Request.Query["sort"]) with
        {
            TimeBudget = context.RequestServices.GetRequiredService<IOptions<ApiLimits>>().Value.QueryTimeBudget,
        };
        return ValueTask.FromResult<QueryWindow?>(window);
    }

    /// <summary>The query this window asks for over <paramref name="filter"/>.</summary>
    public DocumentQuery Over(FilterNode filter) => new(filter, Sort, Skip, Limit) { TimeBudget = TimeBudget };

    public static QueryWindow Parse(string? limit, string? skip, string? sort)
    {
        var l = DocumentQuery.DefaultLimit;
        if (!string.IsNullOrEmpty(limit))
        {
            if (!int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out l) || l < 1)
                throw Problems.BadRequest($"limit '{limit}' must be a whole number from 1 to {DocumentQuery.MaxLimit}");
            if (l > DocumentQuery.MaxLimit)
                throw Problems.BadRequest($"limit {l} is over the maximum of {DocumentQuery.MaxLimit}; page with ?skip=");
        }
        var s = 0;
        if (!string.IsNullOrEmpty(skip) && (!int.TryParse(skip, NumberStyles.None, CultureInfo.InvariantCulture, out s) || s < 0))
            throw Problems.BadRequest($"skip '{skip}' must be a whole number from 0 to {int.MaxValue}");
        return new QueryWindow(l, s, ParseSort(sort));
    }

    private static List<SortKey> ParseSort(string? sort)
    {
        var keys = new List<SortKey>();
        if (string.IsNullOrWhiteSpace(sort)) return keys;
        foreach (var part in sort.Split(',', StringSplitOptions.TrimEntries))
        {
            var pieces = part.Split(':', 2);
            var path = pieces[0];
            if (path.Length == 0)
                throw Problems.BadRequest($"sort '{Printable(sort)}' has an empty field; write ?sort=field:asc|desc[,field:asc|desc]");
            if (path.Any(char.IsControl))
                throw Problems.BadRequest($"sort field '{Printable(path)}' holds a control character; field names are printable text");
            if (path.Split('.').Length > Core.Querying.JsonPath.MaxSegments)
                throw Problems.BadRequest($"sort field '{Core.Querying.JsonPath.Abbreviate(path)}' has more than {Core.Querying.JsonPath.MaxSegments} segments, more levels than a document may nest");
            if (path.Split('.').Any(p => p.Length == 0 || p.StartsWith('$')))
                throw Problems.BadRequest($"sort field '{path}' is not a dotted field path such as created_at or metadata.owner");
            var direction = pieces.Length == 1 ? "asc" : pieces[1].ToLowerInvariant();
            keys.Add(direction switch
            {
                "asc" => new SortKey(path, SortDirection.Asc),
                "desc" => new SortKey(path, SortDirection.Desc),
                _ => throw Problems.BadRequest($"sort direction '{Printable(pieces[1])}' for '{path}' must be asc or desc"),
            });
        }
        return keys;
    }

    /// <summary>Text for a message with control characters shown as <c>\u0000</c> escapes.</summary>
    private static string Printable(string text) =>
        string.Concat(text.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
}
