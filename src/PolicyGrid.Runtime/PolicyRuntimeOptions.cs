using Microsoft.Extensions.Configuration;
using PolicyGrid.Runtime.Hosting;

namespace PolicyGrid.Runtime;

/// <summary>Everything the runtime can be told, bound from configuration section <c>PolicyGrid:Runtime</c>.</summary>
public sealed class PolicyRuntimeOptions
{
    public const string Section = "PolicyGrid:Runtime";

    /// <summary>The Python worker pool (<c>PolicyGrid:Runtime:Pool</c>).</summary>
    public WorkerPoolOptions Pool { get; set; } = new();

    /// <summary>Type 2 execution (<c>PolicyGrid:Runtime:Execution</c>).</summary>
    public ExecutionOptions Execution { get; set; } = new();

    /// <summary>The decision log: its writer, retention, and calls it cannot record (<c>PolicyGrid:Runtime:Decisions</c>).</summary>
    public DecisionLogOptions Decisions { get; set; } = new();

    /// <summary>Calls to remote executor nodes (<c>PolicyGrid:Runtime:RemoteExecutors</c>).</summary>
    public RemoteExecutorOptions RemoteExecutors { get; set; } = new();
}

/// <summary>What happens when a policy's answer does not match its policy_output_schema.</summary>
public enum OutputSchemaMode
{
    /// <summary>Not checked.</summary>
    Off,
    /// <summary>Checked; a mismatch is logged and the answer still returned.</summary>
    Warn,
    /// <summary>Checked; a mismatch answers 422 policy_error.</summary>
    Enforce,
}

public sealed class ExecutionOptions
{
    /// <summary>Deadline when neither the call (timeout_seconds) nor the policy (resource_estimates.timeout_seconds) gives one.</summary>
    public TimeSpan DefaultTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest deadline a call or policy may ask for.</summary>
    public TimeSpan MaxTimeout { get; set; } = TimeSpan.FromMinutes(5);

    public OutputSchemaMode OutputSchemaMode { get; set; } = OutputSchemaMode.Warn;

    /// <summary>Time to live of saved policy context; null keeps it until overwritten.</summary>
    public TimeSpan? ContextTtl { get; set; }
}

public sealed class DecisionLogOptions
{
    /// <summary>Most decisions kept; older ones are pruned in the background.</summary>
    public int MaxCount { get; set; } = 100_000;

    /// <summary>Oldest decision kept.</summary>
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromDays(30);

    /// <summary>Decisions waiting to be written; when full, executions wait for the writer.</summary>
    public int QueueCapacity { get; set; } = 100_000;

    /// <summary>
    /// Group commit: once a decision is queued the writer waits this long for more before it writes them
    /// all in one durable transaction, so a steady trickle of calls costs at most one disk sync per
    /// interval instead of one per call (a sync costs more CPU than a warm policy call). A decision is
    /// durable within this interval plus one write. Zero writes each decision as soon as it is queued.
    /// </summary>
    public TimeSpan CommitInterval { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>How often retention runs.</summary>
    public TimeSpan PruneInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How often decisions the store refused (held, up to <see cref="QueueCapacity"/>) are written again while it refuses
    /// them; a newer decision the store takes has them written at once.
    /// </summary>
    public TimeSpan RetryInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// What an executor does with calls while its decision log cannot record them (from a decision the store refused
    /// to the next one it takes): <see cref="Serve"/> runs them unrecorded, <see cref="Refuse"/> answers them 503
    /// before any policy code runs. A string, not an enum, so that a wrong value is refused at start naming the two
    /// allowed (the configuration binder's own message names only the enum's type).
    /// </summary>
    public string WhenUnrecorded { get; set; } = Serve;

    public const string Serve = "serve";
    public const string Refuse = "refuse";

    /// <summary>
    /// Decision fields the embedded store (serve's SQLite) keeps an index on, comma-separated, from
    /// <see cref="IndexableFields"/>; none by default. An index makes equality and $in on its field read only the matching
    /// decisions (one caller among 1,000 at 100,000 decisions: 455 -> 6 ms), but every decision written pays for it:
    /// policy_rule_uri and caller with many distinct values cost the writer several times what the decision itself does
    /// (21.6 -> 120.8 µs per decision with all of them, bench decisions), on the Type 2 hot path. A field taken out of the
    /// list has its index dropped at the next start. Time windows on "at" and sorts on "at" are fast without any index.
    /// </summary>
    public string IndexedFields { get; set; } = "";

    /// <summary>The top-level decision fields <see cref="IndexedFields"/> may name.</summary>
    public static readonly IReadOnlyList<string> IndexableFields = ["policy_rule_uri", "caller", "outcome", "function_id", "graph_id", "execution_id"];

    /// <summary><see cref="IndexedFields"/> as a list (blanks dropped, each once). A method, not a property: see <see cref="RefusesUnrecorded"/>.</summary>
    public IReadOnlyList<string> IndexedFieldList() =>
        [.. (IndexedFields ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct(StringComparer.Ordinal)];

    /// <summary>
    /// Whether <see cref="WhenUnrecorded"/> asks for calls to be refused (case aside, as other settings' values). A method, not
    /// a property: the binder, and serve's check for settings nothing reads, would take a property for a setting of its own.
    /// </summary>
    public bool RefusesUnrecorded() => string.Equals(WhenUnrecorded, Refuse, StringComparison.OrdinalIgnoreCase);
}

public sealed class RemoteExecutorOptions
{
    public const string Section = PolicyRuntimeOptions.Section + ":RemoteExecutors";

    /// <summary>The settings as configured now, for a caller outside the runtime's own options (job transports, the node installer).</summary>
    public static RemoteExecutorOptions From(IConfiguration configuration) =>
        configuration.GetSection(Section).Get<RemoteExecutorOptions>() ?? new();

    /// <summary>Bearer token sent to remote executor nodes, when they require one (only to <see cref="TokenNodes"/> when that is set).</summary>
    public string? Token { get; set; }

    /// <summary>
    /// The executor nodes <see cref="Token"/> may be sent to, each as an <c>executor_host_uri</c> without a path:
    /// <c>http(s)://host:port</c> or <c>dapr://app-id</c>. Any writer can register an executor, so without this list
    /// the token goes to whatever address one registers (kept for existing deployments, and warned about at start).
    /// A node not listed is called without the token.
    /// </summary>
    public string[] TokenNodes { get; set; } = [];

    /// <summary>The token to send to the executor at <paramref name="executorHostUri"/>: null when none is set or the node is not in <see cref="TokenNodes"/>.</summary>
    public string? TokenFor(Uri executorHostUri)
    {
        ArgumentNullException.ThrowIfNull(executorHostUri);
        if (string.IsNullOrEmpty(Token)) return null;
        if (TokenNodes.Length == 0) return Token;
        var node = NodeOf(executorHostUri);
        return TokenNodes.Any(n => TryParseNode(n, out var listed) && listed == node) ? Token : null;
    }

    /// <summary>For a node's 401/403: which credentials this server sent it, named by their setting.</summary>
    public string TokenSentTo(Uri executorHostUri) =>
        !string.IsNullOrEmpty(Token) && TokenFor(executorHostUri) is null
            ? $"this server sent no token: the node is not in {PolicyRuntimeOptions.Section}:RemoteExecutors:TokenNodes"
            : $"the token this server sends to nodes is {PolicyRuntimeOptions.Section}:RemoteExecutors:Token";

    /// <summary>Whether <paramref name="entry"/> is a node as <see cref="TokenNodes"/> takes it (an absolute http, https or dapr address with no path, query or fragment).</summary>
    public static bool TryParseNode(string? entry, out string node)
    {
        node = "";
        if (!Uri.TryCreate(entry, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https" or "dapr")
            || uri.AbsolutePath is not ("" or "/") || uri.Query.Length > 0 || uri.Fragment.Length > 0 || uri.UserInfo.Length > 0)
            return false;
        node = NodeOf(uri);
        return true;
    }

    // Scheme, host and port, lower-cased, the port explicit: http://Edge:80/ and http://edge are one node.
    private static string NodeOf(Uri uri) =>
        uri.Scheme == "dapr" ? $"dapr://{uri.Host.ToLowerInvariant()}" : $"{uri.Scheme}://{uri.IdnHost.ToLowerInvariant()}:{uri.Port}";

    /// <summary>Time to connect and get an answer beyond the policy's own deadline.</summary>
    public TimeSpan Overhead { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long the registry waits for a node's answer to a call, management action or deployment of a Type 4 function
    /// there (the node's own CallTimeout bounds the run; a call may also wait behind others on the instance). Past it
    /// the call answers 503 and may still run on the node.
    /// </summary>
    public TimeSpan FunctionCallTimeout { get; set; } = TimeSpan.FromSeconds(100);

    /// <summary>
    /// How long the registry waits for a node to take a function's deployment (its bundle sent, the policy loaded there,
    /// its requirements installed on a first deploy): longer than a call may take. A deployment used to wait only
    /// <see cref="FunctionCallTimeout"/>, so an operator who shortened that for calls had deployments fail with 503.
    /// </summary>
    public TimeSpan FunctionDeployTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Retries of a call that never reached the node (connection refused, name not resolved).</summary>
    public int ConnectRetries { get; set; } = 2;

    /// <summary>
    /// Largest answer read from a node (4 × the default Pool:MaxResultBytes, for the envelope and a node configured
    /// for more): a node answering without end would otherwise be buffered whole, twice, in this server's memory.
    /// </summary>
    public long MaxAnswerBytes { get; set; } = 64L << 20;
}
