using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Ports;
using PolicyGrid.Runtime;
using PolicyGrid.Runtime.Execution;

namespace PolicyGrid.Embedded.Storage;

/// <summary>
/// What the SQLite store knows of the decision log's table, so that selective audit queries read only the decisions
/// they answer with instead of every one (a million decisions is seconds): a time window on <c>at</c> becomes a range
/// of ids (<see cref="DecisionIdRange"/>), equality and $in on the fields people filter by go through an index, and
/// a sort on <c>at</c> walks the ids.
/// </summary>
internal static class DecisionTable
{
    public static readonly string Name = SqliteDatabase.TableFor(Collections.Decisions);

    // DecisionLogOptions.IndexableFields: top-level fields an index on (the field's value, id) may be kept on (DecisionLogOptions.IndexedFields
    // chooses; none by default): equality finds its decisions directly and in id order, so a newest-first page stops once
    // full and a time window narrows within one value. Expression indexes rather than generated columns: an existing
    // table takes them with CREATE INDEX IF NOT EXISTS alone, where a column needs ALTER TABLE guarded by a look at the
    // schema. SQLite uses such an index only for the very same expression, path written literally (the translator's are
    // parameters), so the translator writes ValueOf for these fields. The last three are absent from Type 2
    // records: their indexes leave those out (partial), which costs the Type 2 writer nothing. Every index costs the
    // writer on every decision (bench decisions: each one several µs, a field of many values more, its inserts spread
    // over many pages), hence opt-in, and not error_code, status or kind (outcome finds the errors).
    private static readonly HashSet<string> Optional = new(["function_id", "graph_id", "execution_id"], StringComparer.Ordinal);

    public static string ValueOf(string field) => $"json_extract(body, '$.{field}')";

    /// <summary>
    /// Decisions where an indexed field holds an array or a number with a fraction or exponent (the log writes
    /// neither; a hand-edited file might). Core matches an array when any element does, which an index on the whole
    /// value cannot see, and reads a long number text as an exact decimal where SQLite rounds it to a double; so while
    /// any such decision exists, queries do without the indexes. This partial index holds only those rows: normally
    /// none, and the look is one probe of an empty index.
    /// </summary>
    private static readonly string Irregular = string.Join(" OR ", DecisionLogOptions.IndexableFields.Select(f => $"json_type(body, '$.{f}') IN ('array', 'real')"));

    /// <summary>
    /// The statements that leave exactly <paramref name="indexed"/> indexed (and the look-out for irregular values while any
    /// is): a field taken out of the setting has its index dropped, so the writer stops paying for it.
    /// </summary>
    public static string CreateIndexes(string table, IReadOnlyList<string> indexed) =>
        string.Concat(DecisionLogOptions.IndexableFields.Select(f => indexed.Contains(f)
            ? $"CREATE INDEX IF NOT EXISTS \"{table}_{f}\" ON \"{table}\"({ValueOf(f)}, id){(Optional.Contains(f) ? $" WHERE {ValueOf(f)} IS NOT NULL" : "")};"
            : $"DROP INDEX IF EXISTS \"{table}_{f}\";"))
        + (indexed.Count > 0
            ? $"CREATE INDEX IF NOT EXISTS \"{table}_irregular\" ON \"{table}\"(id) WHERE {Irregular};"
            : $"DROP INDEX IF EXISTS \"{table}_irregular\";");

    /// <summary>
    /// How to read the table for one query, looked at in the query's own read transaction (<paramref name="snapshot"/>)
    /// so that no write between the look and the read can make the answer differ from reading every decision.
    /// </summary>
    public static DecisionReadPlan Plan(SqliteConnection connection, SqliteTransaction snapshot, DocumentQuery query, IReadOnlyList<string> indexed)
    {
        using var command = connection.CreateCommand();
        command.Transaction = snapshot;
        // Without field indexes there is no index of irregular values either, and looking for them would read every decision.
        var irregularLook = indexed.Count > 0 ? $"EXISTS (SELECT 1 FROM \"{Name}\" WHERE {Irregular})" : "0";
        command.CommandText = $"SELECT {irregularLook}, EXISTS (SELECT 1 FROM \"{Name}\" WHERE id < '{DecisionIdRange.TimeOrderedFrom}')";
        using var reader = command.ExecuteReader();
        reader.Read();
        var irregular = reader.GetInt64(0) != 0;
        var timeOrdered = reader.GetInt64(1) == 0;
        // Core orders by "at", ties by id; ids of one millisecond rise in recording order, so "at" ascending is id
        // ascending, and "at" descending is id descending with each millisecond's ids turned round.
        var byAt = timeOrdered && query.Sort is [{ Path: "at" } key] ? key.Direction : (SortDirection?)null;
        return new DecisionReadPlan(irregular ? [] : indexed, DecisionIdRange.For(query.Filter), byAt);
    }
}

/// <summary>
/// One query's way through the decision table: <see cref="IndexedFields"/> the translator may look up through their
/// indexes, the <see cref="Ids"/> every match lies in, and, for a sort on <c>at</c> alone, its direction, to be read
/// in id order instead.
/// </summary>
internal sealed record DecisionReadPlan(IReadOnlyList<string> IndexedFields, DecisionIdRange Ids, SortDirection? ByAt);
