using PolicyGrid.Core.Ports;

namespace PolicyGrid.Dapr;

/// <summary>
/// Every name the Dapr shape shares with its YAML: app ids, ports, component names, topics and
/// invoked method names. dapr.yaml, components/ and deploy/ must say exactly these; the YAML tests
/// in tests/PolicyGrid.Dapr.Tests read those files and compare them with this class.
/// </summary>
public static class DaprNames
{
    public static class Apps
    {
        public const string Registry = "policy-registry";
        public const string Executor = "policy-executor";
        public const string Functions = "policy-functions";
        public const string Graphs = "policy-graphs";

        public static readonly IReadOnlyList<string> All = [Registry, Executor, Functions, Graphs];
    }

    /// <summary>The HTTP port each app listens on (its Dapr <c>app-port</c>), locally and in its container.</summary>
    public static class Ports
    {
        public const int Registry = 5100;
        public const int Executor = 5101;
        public const int Functions = 5102;
        public const int Graphs = 5103;

        public static int For(string appId) => appId switch
        {
            Apps.Registry => Registry,
            Apps.Executor => Executor,
            Apps.Functions => Functions,
            Apps.Graphs => Graphs,
            _ => throw new ArgumentOutOfRangeException(nameof(appId), appId, "not a PolicyGrid app id"),
        };
    }

    /// <summary>Dapr component names (metadata.name in components/ and deploy/).</summary>
    public static class Components
    {
        /// <summary>Documents (policies, executors, ...): state.redis locally, state.mongodb in production.</summary>
        public const string DocumentStore = "policygrid-documents";

        /// <summary>The TTL cache of policy context and results: state.redis with ttlInSeconds.</summary>
        public const string CacheStore = "policygrid-cache";

        /// <summary>Actor (Type 4) and workflow (Type 5) state: state.redis with actorStateStore "true".</summary>
        public const string ActorStore = "policygrid-actors";

        public const string PubSub = "policygrid-pubsub";

        /// <summary>Bundle archives: bindings.localstorage locally, bindings.aws.s3 (S3/Ceph) in production.</summary>
        public const string Bundles = "policygrid-bundles";

        /// <summary>
        /// The Kubernetes secret production components read their credentials from (never inline in YAML), through
        /// <c>secretKeyRef</c> with no <c>auth.secretStore</c>: the Dapr operator resolves those, so no sidecar needs a
        /// Kubernetes API token or a secret store component of its own.
        /// </summary>
        public const string SecretStore = "policygrid-secrets";

        public static readonly IReadOnlyList<string> All = [DocumentStore, CacheStore, ActorStore, PubSub, Bundles];
    }

    /// <summary>The Dapr Configuration and Resiliency resource names.</summary>
    public const string Configuration = "policygrid-config";
    public const string Resiliency = "policygrid-resiliency";

    /// <summary>Methods invoked on <see cref="Apps.Executor"/> (service invocation maps them to POST /{method}).</summary>
    public static class Methods
    {
        public const string ExecutePolicy = "execute_policy";
        public const string Management = "management";
    }

    public static class Topics
    {
        public const string Evaluations = PolicyGrid.Core.Ports.Topics.Evaluations;
        public const string Decisions = PolicyGrid.Core.Ports.Topics.Decisions;
        public const string DeadLetter = PolicyGrid.Core.Ports.Topics.DeadLetter;
        public const string PolicyEvents = PolicyGrid.Core.Ports.Topics.PolicyEvents;
    }

    /// <summary>The route the executor app subscribes <see cref="Topics.Evaluations"/> to.</summary>
    public const string EvaluationsRoute = "/dapr/events/policy-evaluations";

    /// <summary>The route the executor and functions apps subscribe <see cref="Topics.PolicyEvents"/> to (deleted and retired policies).</summary>
    public const string PolicyEventsRoute = "/dapr/events/policy-events";

    /// <summary>The subscription of an app that runs policies to <see cref="Topics.PolicyEvents"/>, as <c>GET /dapr/subscribe</c> lists it.</summary>
    public static System.Text.Json.Nodes.JsonObject PolicyEventsSubscription() => new()
    {
        ["pubsubname"] = Components.PubSub,
        ["topic"] = Topics.PolicyEvents,
        ["route"] = PolicyEventsRoute,
    };

    /// <summary>The built-in executor document the registry keeps, reached over service invocation.</summary>
    public const string ExecutorId = "dapr";
    public const string ExecutorHostUri = "dapr://" + Apps.Executor;

    /// <summary>The URI scheme of executors reached by Dapr service invocation: <c>dapr://app-id</c>.</summary>
    public const string UriScheme = "dapr";
}
