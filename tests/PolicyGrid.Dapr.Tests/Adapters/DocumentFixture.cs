using System.Text.Json;
using System.Text.Json.Nodes;
using Dapr.Client;
using Microsoft.Extensions.Options;
using NSubstitute;
using PolicyGrid.Dapr;
using PolicyGrid.Dapr.Documents;

namespace PolicyGrid.Dapr.Tests.Adapters;

/// <summary>
/// A substitute DaprClient that behaves like a state store for the calls the document adapter makes
/// (ETag per key, first-write checks), so tests observe both the exact SDK calls and their effect. Like daprd, it
/// refuses a key holding "||" with InvalidArgument (dapr/dapr pkg/components/state/state_config.go, checkKeyIllegal).
/// </summary>
public sealed class FakeStateStore
{
    public DaprClient Client { get; } = Substitute.For<DaprClient>();
    public Dictionary<string, (string Json, string ETag)> Entries { get; } = new();
    private int version;

    public FakeStateStore()
    {
        Client.GetStateAndETagAsync<StateDocument>(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<ConsistencyMode?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c => Read<StateDocument>(c.ArgAt<string>(1)));
        Client.GetStateAndETagAsync<KeyIndex>(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<ConsistencyMode?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c => Read<KeyIndex>(c.ArgAt<string>(1)));
        Client.GetStateAndETagAsync<JsonNode>(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<ConsistencyMode?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c => Read<JsonNode>(c.ArgAt<string>(1)));
        Client.TrySaveStateAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<StateDocument>(), Arg.Any<string>(), Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c => Task.FromResult(TryWrite(c.ArgAt<string>(1), c.ArgAt<StateDocument>(2), c.ArgAt<string>(3), c.ArgAt<IReadOnlyDictionary<string, string>?>(5))));
        Client.TrySaveStateAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<MongoLiteral<StateDocument>>(), Arg.Any<string>(), Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c => Task.FromResult(TryWrite(c.ArgAt<string>(1), c.ArgAt<MongoLiteral<StateDocument>>(2), c.ArgAt<string>(3), c.ArgAt<IReadOnlyDictionary<string, string>?>(5))));
        Client.TrySaveStateAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<KeyIndex>(), Arg.Any<string>(), Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c => Task.FromResult(TryWrite(c.ArgAt<string>(1), c.ArgAt<KeyIndex>(2), c.ArgAt<string>(3))));
        Client.SaveStateAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<StateDocument>(), Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c =>
            {
                var key = Checked(c.ArgAt<string>(1));
                // state.redis: a key once written with first-write concurrency refuses a write that names no ETag.
                if (FirstWritten.Contains(key))
                    throw new global::Dapr.DaprException("State operation failed: the Dapr endpoint indicated a failure. See InnerException for details.",
                        new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.Internal, $"failed saving state in state store: failed to set key {key}: failed to set key {key}")));
                Entries[key] = (JsonSerializer.Serialize(c.ArgAt<StateDocument>(2)), NextETag());
                Written(key, c.ArgAt<IReadOnlyDictionary<string, string>?>(4));
                return Task.CompletedTask;
            });
        Client.TryDeleteStateAsync(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<string>(), Arg.Any<StateOptions>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c =>
            {
                var key = Checked(c.ArgAt<string>(1));
                if (!Entries.TryGetValue(key, out var e) || e.ETag != c.ArgAt<string>(2)) return Task.FromResult(false);
                Entries.Remove(key);
                return Task.FromResult(!Retried(ref landedThenRetried));
            });
        Client.GetBulkStateAsync(Arg.Any<string>(), Arg.Any<IReadOnlyList<string>>(), Arg.Any<int?>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c => Task.FromResult<IReadOnlyList<BulkStateItem>>(Counted(c.ArgAt<IReadOnlyList<string>>(1)).Select(Checked).ToList()
                .Select(k => Entries.TryGetValue(k, out var e) ? new BulkStateItem(k, e.Json, e.ETag) : new BulkStateItem(k, "", "")).ToList()));
        PlayBulkCalls();
    }

    /// <summary>How many keys bulk reads asked for, all together: the documents a query read.</summary>
    public int BulkReadKeys { get; private set; }

    private IReadOnlyList<string> Counted(IReadOnlyList<string> keys)
    {
        BulkReadKeys += keys.Count;
        return keys;
    }

    /// <summary>Bulk calls the adapter made: state transactions (their operation count) and bulk deletes (their key count).</summary>
    public List<int> Transactions { get; } = [];
    public List<int> BulkDeletes { get; } = [];

    // Transactions upsert every operation's value as sent (the adapter serializes entries itself) or delete its key;
    // bulk deletes carry no ETag, so they delete whatever is there.
    private void PlayBulkCalls()
    {
        Client.ExecuteStateTransactionAsync(Arg.Any<string>(), Arg.Any<IReadOnlyList<StateTransactionRequest>>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c =>
            {
                var operations = c.ArgAt<IReadOnlyList<StateTransactionRequest>>(1);
                Transactions.Add(operations.Count);
                foreach (var op in operations)
                {
                    Checked(op.Key);
                    if (op.OperationType == StateOperationType.Upsert)
                    {
                        Entries[op.Key] = (Stored(System.Text.Encoding.UTF8.GetString(op.Value!), op.Metadata), NextETag());
                        Written(op.Key, op.Metadata);
                    }
                    else Entries.Remove(op.Key);
                }
                return Task.CompletedTask;
            });
        Client.DeleteBulkStateAsync(Arg.Any<string>(), Arg.Any<IReadOnlyList<BulkDeleteStateItem>>(), Arg.Any<CancellationToken>())
            .Returns(c =>
            {
                var items = c.ArgAt<IReadOnlyList<BulkDeleteStateItem>>(1);
                BulkDeletes.Add(items.Count);
                foreach (var item in items) Entries.Remove(Checked(item.Key));
                return Task.CompletedTask;
            });
    }

    /// <summary>
    /// Also answers state queries, as a store with the query API would: it selects by collection alone (the adapter
    /// applies Core's filter to every result anyway, so a superset is what a partial push-down gives), sorts by each key
    /// in turn (the entry's id, or a document field compared as text), and pages by the query's limit with the offset as
    /// the token. <see cref="QueriedItems"/> counts the entries its pages answered.
    /// </summary>
    public FakeStateStore WithIdQueries()
    {
        Client.QueryStateAsync<StateDocument>(Arg.Any<string>(), Arg.Any<string>(), Arg.Any<IReadOnlyDictionary<string, string>>(), Arg.Any<CancellationToken>())
            .Returns(c =>
            {
                var query = JsonNode.Parse(c.ArgAt<string>(1))!;
                var filter = query["filter"]!;
                var collection = (filter["EQ"] ?? filter["AND"]![0]!["EQ"])!["collection"]!.GetValue<string>();
                var sort = query["sort"]?.AsArray().Select(k => (Key: k!["key"]!.GetValue<string>(), Desc: k["order"]!.GetValue<string>() == "DESC")).ToList()
                    ?? [("id", false)]; // unsorted: any order will do
                var limit = query["page"]!["limit"]!.GetValue<int>();
                var offset = int.TryParse(query["page"]!["token"]?.GetValue<string>(), out var o) ? o : 0;
                var docs = Entries.Values.Select(Answered).OfType<StateDocument>().Where(d => d.Collection == collection)
                    .Select(d => (Doc: d, Keys: sort.Select(k => SortValue(d, k.Key)).ToArray())).ToList();
                docs.Sort((a, b) =>
                {
                    for (var i = 0; i < sort.Count; i++)
                    {
                        var order = string.CompareOrdinal(a.Keys[i], b.Keys[i]);
                        if (order != 0) return sort[i].Desc ? -order : order;
                    }
                    return 0;
                });
                var page = docs.Skip(offset).Take(limit).Select(d => new StateQueryItem<StateDocument>(StateKeys.Document(collection, d.Doc.Id), d.Doc, "", "")).ToList();
                QueriedItems += page.Count;
                var token = offset + limit < docs.Count ? (offset + limit).ToString(System.Globalization.CultureInfo.InvariantCulture) : "";
                return Task.FromResult(new StateQueryResponse<StateDocument>(page, token, new Dictionary<string, string>()));
            });
        return this;
    }

    /// <summary>How many entries state queries answered, all pages together: the documents a query read through the query API.</summary>
    public int QueriedItems { get; private set; }

    // An entry as a query answers it, converted once per write (ETags are never reused): queries page a few entries at a time.
    private readonly Dictionary<string, StateDocument?> answered = new();

    private StateDocument? Answered((string Json, string ETag) entry)
    {
        if (!answered.TryGetValue(entry.ETag, out var doc))
            answered[entry.ETag] = doc = JsonSerializer.Deserialize<StateDocument>(RelaxedExtendedJson(JsonNode.Parse(entry.Json))!.ToJsonString());
        return doc;
    }

    private static string SortValue(StateDocument entry, string key) => key == "id"
        ? entry.Id
        : key.StartsWith(StateDocument.DocPath + ".", StringComparison.Ordinal) && entry.Doc[key[(StateDocument.DocPath.Length + 1)..]] is JsonValue v
            ? v.ToString()
            : throw new InvalidOperationException($"this fake sorts by the id or a top-level document field, not '{key}'");

    /// <summary>
    /// How state.mongodb answers a state query: relaxed extended JSON (bson.MarshalExtJSON), where a number, kept as a
    /// double, that is integral comes out as <c>N.0</c>.
    /// </summary>
    private static JsonNode? RelaxedExtendedJson(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (key, value) in o.ToList()) o[key] = RelaxedExtendedJson(value?.DeepClone());
                return o;
            case JsonArray a:
                return new JsonArray(a.Select(i => RelaxedExtendedJson(i?.DeepClone())).ToArray());
            case JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.GetValue<double>() is var d && d == Math.Floor(d) && Math.Abs(d) < 1e15:
                return JsonNode.Parse(d.ToString("0", System.Globalization.CultureInfo.InvariantCulture) + ".0");
            default:
                return node;
        }
    }

    /// <summary>Objects written through the bundles binding, by object key.</summary>
    public Dictionary<string, byte[]> Objects { get; } = new();

    /// <summary>Also plays the bundles binding (create/get by metadata key, base64 decoded as the bucket would).</summary>
    public FakeStateStore WithBucket()
    {
        Client.InvokeBindingAsync(Arg.Any<BindingRequest>(), Arg.Any<CancellationToken>()).Returns(c =>
        {
            var request = c.Arg<BindingRequest>();
            var key = request.Metadata["key"];
            switch (request.Operation)
            {
                case "create":
                    var data = request.Data.ToArray();
                    lock (Objects) Objects[key] = request.Metadata.GetValueOrDefault("decodeBase64") == "true" ? Convert.FromBase64String(System.Text.Encoding.ASCII.GetString(data)) : data;
                    return new BindingResponse(request, ReadOnlyMemory<byte>.Empty, new Dictionary<string, string>());
                case "get":
                    lock (Objects)
                        if (Objects.TryGetValue(key, out var bytes)) return new BindingResponse(request, bytes, new Dictionary<string, string>());
                    throw new global::Dapr.DaprException("Binding operation failed", new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.Internal, "api error NoSuchKey: The specified key does not exist.")));
                default:
                    throw new InvalidOperationException("unexpected binding operation " + request.Operation);
            }
        });
        return this;
    }

    public DaprStateDocumentStore Store(DocumentQueryMode mode = DocumentQueryMode.KeyIndex) =>
        new(Client, Options.Create(new DaprOptions { DocumentQueries = mode, QueryPageSize = 2 }));

    public void Put(string key, object value) => Entries[key] = (JsonSerializer.Serialize(value), NextETag());

    private Task<(T, string)> Read<T>(string key) =>
        Task.FromResult(Entries.TryGetValue(Checked(key), out var e) ? (JsonSerializer.Deserialize<T>(e.Json)!, e.ETag) : (default(T)!, ""));

    /// <summary>First-write semantics: an empty ETag only creates; a given one must match.</summary>
    private bool TryWrite<T>(string key, T value, string etag, IReadOnlyDictionary<string, string>? metadata = null)
    {
        Checked(key);
        var exists = Entries.TryGetValue(key, out var current);
        if (etag.Length == 0 ? exists : !exists || current.ETag != etag) return false;
        Entries[key] = (Stored(JsonSerializer.Serialize(value), metadata), NextETag());
        Written(key, metadata);
        FirstWritten.Add(key);
        return !Retried(ref landedThenRetried);
    }

    private int landedThenRetried;

    /// <summary>
    /// The next <paramref name="count"/> conditional writes or deletes land, then answer as daprd does when its resiliency
    /// policy retried the call after a timeout: the retry meets the ETag the first attempt left, and is refused.
    /// </summary>
    public void LandThenRetry(int count = 1) => landedThenRetried = count;

    private static bool Retried(ref int count)
    {
        if (count == 0) return false;
        count--;
        return true;
    }

    /// <summary>Keys written with first-write concurrency (the adapter's conditional writes), which state.redis marks.</summary>
    public HashSet<string> FirstWritten { get; } = new(StringComparer.Ordinal);

    /// <summary>The <c>contentType</c> metadata each key was last written with (null: none), as daprd would receive it.</summary>
    public Dictionary<string, string?> ContentTypes { get; } = new();

    private void Written(string key, IReadOnlyDictionary<string, string>? metadata) =>
        ContentTypes[key] = metadata?.GetValueOrDefault("contentType");

    /// <summary>What daprd answers a state key holding its key-prefix separator "||": InvalidArgument, nothing stored.</summary>
    public static string Checked(string key) => key.Contains("||", StringComparison.Ordinal)
        ? throw new global::Dapr.DaprException("State operation failed: the Dapr endpoint indicated a failure. See InnerException for details.",
            new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.InvalidArgument, $"input key/keyPrefix '{key}' can't contain '||'")))
        : key;

    /// <summary>
    /// What the store keeps of a value sent as <paramref name="json"/>. Sent as JSON (contentType application/json, the
    /// adapter's QueryApi mode, i.e. state.mongodb), it goes through state.mongodb's aggregation-pipeline update
    /// (<c>$set: {value: v}</c>, components-contrib state/mongodb/mongodb.go setInternal, v1.18.4) as MongoDB evaluates an
    /// expression there: <c>{"$literal": x}</c> is x unparsed; otherwise a string starting with <c>$</c> is a field path
    /// (here: to nothing, so the field is left out, and null in an array), and an object key starting with <c>$</c> an
    /// operator (an unknown one fails the write). Other values are kept as sent.
    /// </summary>
    private static string Stored(string json, IReadOnlyDictionary<string, string>? metadata) =>
        metadata?.GetValueOrDefault("contentType") == "application/json" ? Pipeline(JsonNode.Parse(json)).Value?.ToJsonString() ?? "null" : json;

    // Missing: a field path to a field the document does not have, which MongoDB leaves out.
    private static (bool Missing, JsonNode? Value) Pipeline(JsonNode? value)
    {
        switch (value)
        {
            case JsonObject o when o.Count == 1 && o.ContainsKey("$literal"):
                return (false, o["$literal"]?.DeepClone());
            case JsonObject o when o.FirstOrDefault(p => p.Key.StartsWith('$')) is { Key: not null } op:
                throw new global::Dapr.DaprException("State operation failed: the Dapr endpoint indicated a failure. See InnerException for details.",
                    new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.Internal, $"Unrecognized expression '{op.Key}'")));
            case JsonObject o:
                var fields = new JsonObject();
                foreach (var (key, field) in o)
                    if (Pipeline(field) is (false, var kept)) fields[key] = kept;
                return (false, fields);
            case JsonArray a:
                return (false, new JsonArray(a.Select(item => Pipeline(item) is (false, var kept) ? kept : null).ToArray()));
            case JsonValue v when v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().StartsWith('$'):
                return (true, null);
            default:
                return (false, value?.DeepClone());
        }
    }

    private string NextETag() => (++version).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
