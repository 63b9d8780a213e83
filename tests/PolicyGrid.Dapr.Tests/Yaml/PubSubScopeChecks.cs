using System.Text.Json.Nodes;
using Shouldly;
using static PolicyGrid.Dapr.Tests.Yaml.RepoYaml;

namespace PolicyGrid.Dapr.Tests.Yaml;

/// <summary>
/// Who may publish and subscribe to each PolicyGrid topic on <see cref="DaprNames.Components.PubSub"/>, decided as daprd
/// decides it. Without scopes any app in the namespace could load the component and publish <c>policy-events</c>, which
/// makes the executor and functions apps stop a policy's workers, or forge <c>policy-decisions</c>.
/// </summary>
public static class PubSubScopeChecks
{
    /// <summary>An app id no manifest names: what any other app in the namespace may do.</summary>
    private const string Stranger = "someone-else";

    public static void Check(JsonObject component)
    {
        var name = Text(component["metadata"]!["name"]);
        var loaders = component["scopes"]?.AsArray().Select(s => Text(s)).ToList();
        loaders.ShouldNotBeNull($"{name}: without scopes every app in the namespace loads the component");
        loaders.ShouldBe([DaprNames.Apps.Registry, DaprNames.Apps.Executor, DaprNames.Apps.Functions], ignoreOrder: true,
            $"{name}: the apps that publish or subscribe (the graphs app does neither)");

        var metadata = component["spec"]!["metadata"]!.AsArray().ToDictionary(m => Text(m!["name"]), m => Text(m!["value"]));
        var scoping = new TopicScoping(metadata);
        string[] topics = [DaprNames.Topics.Evaluations, DaprNames.Topics.Decisions, DaprNames.Topics.DeadLetter, DaprNames.Topics.PolicyEvents];
        string[] everyone = [.. DaprNames.Apps.All, Stranger];

        // What each app does, exactly: anything more is refused by daprd.
        var publishes = new Dictionary<string, string[]>
        {
            // policy-evaluations: `dapr publish --publish-app-id policy-registry` (docs/dapr.md); decisions and dead
            // letters: its own POST /events runs the executor's handler.
            [DaprNames.Apps.Registry] = [DaprNames.Topics.PolicyEvents, DaprNames.Topics.Evaluations, DaprNames.Topics.Decisions, DaprNames.Topics.DeadLetter],
            [DaprNames.Apps.Executor] = [DaprNames.Topics.Decisions, DaprNames.Topics.DeadLetter],
        };
        var subscribes = new Dictionary<string, string[]>
        {
            [DaprNames.Apps.Executor] = [.. global::PolicyGrid.Executor.EvaluationSubscription.Subscriptions().Select(s => Text(s!["topic"]))],
            [DaprNames.Apps.Functions] = [Text(DaprNames.PolicyEventsSubscription()["topic"])],
        };
        subscribes[DaprNames.Apps.Executor].ShouldBe([DaprNames.Topics.Evaluations, DaprNames.Topics.PolicyEvents], ignoreOrder: true);

        foreach (var app in everyone)
        {
            foreach (var topic in topics)
            {
                scoping.MayPublish(app, topic).ShouldBe(publishes.GetValueOrDefault(app, []).Contains(topic), $"{name}: may {app} publish {topic}?");
                scoping.MaySubscribe(app, topic).ShouldBe(subscribes.GetValueOrDefault(app, []).Contains(topic), $"{name}: may {app} subscribe to {topic}?");
            }
        }
    }

    /// <summary>
    /// Dapr's pub/sub topic scoping (docs "Scope Pub/sub topic access"; dapr/dapr pkg/runtime/pubsub IsOperationAllowed and
    /// pkg/scopes GetScopedTopics, v1.18): <c>allowedTopics</c> limits every app; an app named in <c>publishingScopes</c> /
    /// <c>subscriptionScopes</c> (<c>app=t1,t2;app2=</c>) may use only the topics listed for it; a topic in
    /// <c>protectedTopics</c> is refused to every app whose scope does not list it.
    /// </summary>
    private sealed class TopicScoping(IReadOnlyDictionary<string, string> metadata)
    {
        public bool MayPublish(string app, string topic) => Allowed(app, topic, "publishingScopes");

        public bool MaySubscribe(string app, string topic) => Allowed(app, topic, "subscriptionScopes");

        private bool Allowed(string app, string topic, string scope)
        {
            if (List("allowedTopics") is { Count: > 0 } allowed && !allowed.Contains(topic)) return false;
            var scoped = Scoped(app, scope);
            if (scoped.Count == 0 && !List("protectedTopics").Contains(topic)) return true;
            return scoped.Contains(topic);
        }

        private List<string> List(string key) =>
            metadata.TryGetValue(key, out var value) && value.Length > 0 ? [.. value.Replace(" ", "", StringComparison.Ordinal).Split(',')] : [];

        // An app listed with no topics ("app=") gets [""]: it may use none.
        private List<string> Scoped(string app, string key)
        {
            var topics = new List<string>();
            if (!metadata.TryGetValue(key, out var value) || value.Length == 0) return topics;
            foreach (var entry in value.Replace(" ", "", StringComparison.Ordinal).Split(';'))
            {
                var parts = entry.Split('=');
                if (parts.Length < 2 || parts[0] != app) continue;
                topics.AddRange(parts[1].Split(',').Where(t => !topics.Contains(t)));
            }
            return topics;
        }
    }
}
