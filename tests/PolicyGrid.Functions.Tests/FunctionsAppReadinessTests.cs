using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging.Abstractions;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Functions;
using PolicyGrid.Runtime.Execution;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// The policy-functions app's readiness: its actors record every function call in the decision log, and a plain health
/// check answered "Healthy" while every one of those decisions was lost. It now says so, as the registry's does.
/// </summary>
public sealed class FunctionsAppReadinessTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-functions-ready-").FullName;
    private readonly DecisionLog decisions;
    private readonly SqliteDocumentStore documents;
    private readonly FunctionsApp app;

    public FunctionsAppReadinessTests()
    {
        documents = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));
        decisions = new DecisionLog(new Refusing(documents), new PolicyGrid.Runtime.DecisionLogOptions(), TimeProvider.System, NullLogger<DecisionLog>.Instance);
        app = new FunctionsApp(documents, decisions);
    }

    public async ValueTask DisposeAsync()
    {
        await app.DisposeAsync();
        await decisions.DisposeAsync();
        Directory.Delete(dir, recursive: true);
    }

    private sealed class FunctionsApp(IDocumentStore documents, DecisionLog decisions) : WebApplicationFactory<PolicyFunctionActor>
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder) => builder.ConfigureTestServices(services =>
        {
            services.RemoveAll<IDocumentStore>();
            services.AddSingleton(documents);
            services.RemoveAll<DecisionLog>();
            services.AddSingleton(decisions);
        });
    }

    // The store with decision writes refused (the state store's component refusing them).
    private sealed class Refusing(SqliteDocumentStore inner) : IDocumentStore
    {
        public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => inner.GetAsync(collection, id, ct);
        public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) =>
            throw new IOException("the state store refused the write");
        public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) => inner.ReplaceAsync(collection, id, body, expectedRevision, ct);
        public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);
        public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) => inner.DeleteAsync(collection, id, expectedRevision, ct);
        public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
    }

    [Fact]
    public async Task Readiness_says_when_the_decision_log_loses_the_function_calls_it_records()
    {
        var client = app.CreateClient();
        (await client.GetAsync("/readyz", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

        await decisions.RecordAsync(new Decision(Decision.KindFunctionCall, "counting:1.0-test", "", "anonymous", "", "", Decision.OutcomeResult, "", 200, 1,
            DateTimeOffset.UtcNow) { FunctionId = "counter" });
        await decisions.FlushAsync(Ct);

        using var unready = await client.GetAsync("/readyz", Ct);
        unready.StatusCode.ShouldBe(HttpStatusCode.ServiceUnavailable);
        (await unready.Content.ReadAsStringAsync(Ct)).ShouldContain("decision log: 1 decision(s) could not be recorded since ");
        (await client.GetAsync("/healthz", Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
    }
}
