using Microsoft.AspNetCore.Http;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Api.Documents;

/// <summary>
/// A true/false query parameter (<c>?force=true</c>), read by us rather than by the framework binder, whose refusal of
/// <c>?force=yes</c> is a bare 400 that names neither the parameter nor what it takes.
/// </summary>
public static class QueryFlag
{
    /// <summary>false when absent; true or false (any case) once; a 400 naming <paramref name="name"/> otherwise.</summary>
    public static bool Parse(IQueryCollection query, string name)
    {
        if (!query.TryGetValue(name, out var values)) return false;
        if (values.Count > 1)
            throw Problems.BadRequest($"query parameter {name} is given {values.Count} times; give it once, true or false");
        if (bool.TryParse(values[0], out var flag)) return flag;
        throw Problems.BadRequest($"query parameter {name} must be true or false, not '{values[0]}'");
    }
}
