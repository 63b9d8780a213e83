using System.ComponentModel;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using PolicyGrid.Api.Documents;
using PolicyGrid.Api.Envelope;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;
using PolicyGrid.Core.Ports;
using PolicyGrid.Core.Querying;
using PolicyGrid.Core.Templates;

namespace PolicyGrid.Api.Policies;

/// <summary>The policy registry: create, read, update (Mongo-style or replacement), delete and query PolicyRules.</summary>
public static class PoliciesApi
{
    public static IEndpointRouteBuilder MapPoliciesApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/policy").WithTags("Policies").AnswersErrors(400, 401, 403, 404, 409, 413);

        api.MapPost("", Create)
            .WithName("CreatePolicy").WithSummary("Register a policy")
            .WithDescription("Validates the full PolicyRule document (templates, settings, parameters, a loadable bundle) and stores it. 409 when the URI exists.");
        api.MapPost("/query", Query)
            .WithName("QueryPolicies").WithSummary("Find policies with a Mongo-style filter")
            .WithDescription("Body: a filter such as {\"tags\": {\"$regex\": \"network\"}}; ?limit (default 100, max 1000), ?skip, ?sort=field:asc|desc.");
        api.MapQueryIsPostOnly("GET /policy/{uri}");
        api.MapGet("/{uri}", Get)
            .WithName("GetPolicy").WithSummary("Read a policy")
            .WithDescription("Answers the document with its revision as the ETag header; secret template fields read as \"***\".");
        api.MapPut("/{uri}", Update)
            .WithName("UpdatePolicy").WithSummary("Update a policy")
            .WithDescription("Body: a Mongo-style update ($set, $unset, $push, $inc) or a full replacement. Identity fields cannot change. Honours If-Match.");
        api.MapDelete("/{uri}", Delete)
            .WithName("DeletePolicy").WithSummary("Delete a policy")
            .WithDescription("409 while a function or graph uses it, unless ?force=true. Honours If-Match.");
        return app;
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> Create(JsonBody body, [AsParameters] PolicyServices services, CancellationToken ct)
    {
        var rule = PolicyRule.FromJson(body.RequireObject()).WithTimestamps(null, services.Clock.GetUtcNow());
        if (rule.WriteErrors(null) is { Count: > 0 } errors) throw Problems.Validation(errors);
        if (await services.Store.GetAsync(Collections.Policies, rule.PolicyRuleUri, ct) is not null)
            return Failure.From(Problems.Conflict($"policy '{rule.PolicyRuleUri}' already exists; update it with PUT /policy/{rule.PolicyRuleUri}, or register a new version or release_tag"));
        rule = await services.Code.CheckAsync(rule, ct);
        var stored = await services.Store.CreateAsync(Collections.Policies, rule.PolicyRuleUri, rule.ToJson(), ct);
        return Answer(services.Http, stored, [.. IgnoredFields.Warnings(body.RequireObject(), stored.Body, "a policy"), .. TemplateWarnings.For(null, rule)]);
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> Get([Description("The policy URI, name:version-release_tag")] string uri, [AsParameters] PolicyServices services, CancellationToken ct)
    {
        var stored = await services.Store.GetAsync(Collections.Policies, Canonical(uri), ct);
        return stored is null ? Failure.From(Missing(uri)) : Answer(services.Http, stored);
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> Update(string uri, JsonBody body, [AsParameters] PolicyServices services, CancellationToken ct)
    {
        var id = Canonical(uri);
        var update = body.RequireObject("update");
        // The last rule whose code passed the dry load and the hash it recorded, so a retry does not load the same code again.
        (PolicyRule Asked, string Sha256)? loaded = null;
        IReadOnlyList<string> templateWarnings = [];
        var retires = false;
        var stored = await OptimisticUpdate.ApplyAsync(services.Store, Collections.Policies, id, ETags.IfMatch(services.Http.Request),
            async (current, token) =>
            {
                var merged = UpdateEngine.Apply(current.Body, update, PolicyRule.IdentityFields);
                // A client that read the document got "***" for secrets; sending that back keeps the stored value.
                merged = TemplateSecrets.RestorePolicyRule(merged, current.Body);
                // The recorded hash belongs to the old code: new code is loaded and recorded afresh, unless the
                // update names the hash it expects.
                if (!JsonValues.DeepEquals(merged["code"], current.Body["code"]) && !Names(update, "code_sha256"))
                    merged["code_sha256"] = "";
                var before = PolicyRule.FromJson(current.Body);
                var rule = PolicyRule.FromJson(merged).WithTimestamps(before, services.Clock.GetUtcNow());
                UpdateEngine.EnsureFieldsKept(update, rule.ToJson());
                if (rule.WriteErrors(before) is { Count: > 0 } errors) throw Problems.Validation(errors);
                templateWarnings = TemplateWarnings.For(before, rule);
                retires = rule.IsRetired && !before.IsRetired;
                if (CodeChanged(before, rule))
                {
                    if (loaded is null || CodeChanged(loaded.Value.Asked, rule))
                        loaded = (rule, (await services.Code.CheckAsync(rule, token)).CodeSha256);
                    rule = rule with { CodeSha256 = loaded.Value.Sha256 };
                }
                return rule.ToJson();
            },
            () => Missing(uri), (asked, now) => RevisionMismatch(id, asked, now), ct);
        if (retires) await PolicyGone.TearDownAsync(services, id, "retired");
        return Answer(services.Http, stored, [.. IgnoredFields.Warnings(update, stored.Body, "a policy"), .. templateWarnings]);
    }

    public static async Task<Results<EnvelopeOk<JsonObject>, Failure>> Delete(string uri, [Description("true: delete even while functions or graphs use the policy")] string? force, [AsParameters] PolicyServices services, CancellationToken ct)
    {
        var id = Canonical(uri);
        // Read from the query itself, not the binder's string: ?force= and a repeated ?force are refused too, by name.
        var forced = QueryFlag.Parse(services.Http.Request.Query, nameof(force));
        var ifMatch = ETags.IfMatch(services.Http.Request);
        var current = await services.Store.GetAsync(Collections.Policies, id, ct);
        if (current is null) return Failure.From(Missing(uri));
        if (ifMatch is not null && !ifMatch.Matches(current.Revision))
            return Failure.From(RevisionMismatch(id, ifMatch, current.Revision));
        if (!forced)
        {
            var users = await PolicyUsage.FindAsync(services.Store, id, ct);
            if (!users.IsEmpty) return Failure.From(Problems.Conflict($"policy '{id}' is still used by {users}; remove those first or delete with ?force=true"));
        }
        var deleted = await services.Store.DeleteAsync(Collections.Policies, id, current.Revision, ct);
        if (deleted is null) return Failure.From(Missing(uri));
        await ForgetContextAsync(services, id);
        await PolicyGone.TearDownAsync(services, id, "deleted");
        return Envelope.Answer.Ok(Redact(deleted.Body));
    }

    // The context saved under the policy's URI (its calls without a context_key) belongs to the policy and goes with it:
    // it stayed in the store for good, and a policy registered again under the same URI started from the deleted one's
    // counters and state. Context saved under callers' context_keys is theirs (any policy may use a key) and is left alone.
    // The policy is gone already, so a context store that fails here is logged rather than answered.
    private static async Task ForgetContextAsync(PolicyServices services, string id)
    {
        try
        {
            await services.Contexts.DeleteAsync(id, CancellationToken.None);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            services.Logs.CreateLogger(typeof(PoliciesApi).FullName!).LogWarning(e,
                "policy {PolicyRuleUri} was deleted, but its saved context could not be removed; a policy registered again under that URI starts from it", id);
        }
    }

    public static async Task<EnvelopeOk<JsonArray>> Query(JsonBody body, QueryWindow window, [AsParameters] PolicyServices services, CancellationToken ct)
    {
        var filter = FilterParser.Parse(body.Node);
        var found = await RedactedQuery.RunAsync(services.Store, Collections.Policies, window.Over(filter),
            TemplateSecrets.PolicyRuleSecretPaths, static (d, _) => ValueTask.FromResult(Redact(d.Body)), ct);
        return Envelope.Answer.Ok(new JsonArray([.. found.Select(d => (JsonNode)d)]));
    }

    /// <summary>
    /// Secret settings/parameters are write-only: every answer masks them. A document stored before
    /// <c>code_sha256</c> existed reads with it empty (nothing recorded), as answers carry every field.
    /// </summary>
    public static JsonObject Redact(JsonObject policy)
    {
        var answer = TemplateSecrets.RedactPolicyRule(policy);
        if (!answer.ContainsKey("code_sha256")) answer["code_sha256"] = "";
        return answer;
    }

    private static EnvelopeOk<JsonObject> Answer(HttpContext http, StoredDocument stored, IReadOnlyList<string>? warnings = null)
    {
        ETags.Set(http.Response, stored.Revision);
        if (stored.Body["status"]?.GetValue<string>() == PolicyStatus.Deprecated) http.Response.Headers["Deprecation"] = "true";
        return Envelope.Answer.Ok(Redact(stored.Body), warnings ?? []);
    }

    // Paths carry the URI unescaped or %-encoded; the router decodes most escapes, this catches the rest.
    public static string Canonical(string uri) => uri.Contains('%', StringComparison.Ordinal) ? Uri.UnescapeDataString(uri) : uri;

    private static bool CodeChanged(PolicyRule before, PolicyRule after) =>
        before.Code != after.Code || before.CodeSha256 != after.CodeSha256 || before.Type != after.Type ||
        !JsonValues.DeepEquals(before.PolicySettings, after.PolicySettings) ||
        !JsonValues.DeepEquals(before.PolicyParameters, after.PolicyParameters);

    /// <summary>Whether an update (operators or a full replacement) says anything about <paramref name="field"/>.</summary>
    private static bool Names(JsonObject update, string field) =>
        update.Any(p => p.Key.StartsWith('$')
            ? p.Value is JsonObject fields && fields.Any(f => f.Key == field || f.Key.StartsWith(field + ".", StringComparison.Ordinal))
            : p.Key == field);

    private static PolicyGridException Missing(string uri) =>
        PolicyUri.TryParse(Canonical(uri), out _, out var error)
            ? Problems.UnknownPolicy(Canonical(uri))
            : Problems.UnknownPolicy(Canonical(uri), $"policy URIs look like name:version-release_tag; {error}");

    public static PolicyGridException RevisionMismatch(string id, IfMatchCondition asked, string current) => asked.Mismatch($"'{id}'", current);
}

/// <summary>What Policies endpoints need, bound by ASP.NET in one bundle.</summary>
public sealed record PolicyServices(HttpContext Http, IDocumentStore Store, TimeProvider Clock, PolicyCodeCheck Code, IContextStore Contexts, ILoggerFactory Logs);
