using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// "request body is not valid JSON" is said only of the caller's body. JSON that fails anywhere else (a stored
/// document that no longer parses, here) is the server's fault: a 500 with a trace id, not a 400 blaming the caller.
/// </summary>
public sealed class NotTheCallersJsonTests : IAsyncLifetime
{
    private const string Unreadable = "unreadable";

    private readonly GridServer _server = new()
    {
        TestServices = services => services.AddSingleton<IDocumentStore>(sp => new UnreadableExecutor(sp.GetRequiredService<SqliteDocumentStore>())),
    };

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task A_stored_document_that_does_not_parse_is_a_500_with_a_trace_id_not_a_bad_request_body()
    {
        var answer = await _server.CreateClient().Get($"/executor/{Unreadable}");

        answer.Status.ShouldBe(500, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("internal_error");
        answer.Message.ShouldContain("trace id");
        answer.Message.ShouldNotContain("request body");
    }

    [Fact]
    public async Task A_request_body_that_is_not_json_is_still_the_callers_400()
    {
        var answer = await _server.CreateClient().Post("/executor/query", "{not json");

        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Message.ShouldContain("request body is not valid JSON");
    }

    /// <summary>The embedded store, except that one executor's stored body fails to parse as a damaged row would.</summary>
    private sealed class UnreadableExecutor(IDocumentStore inner) : IDocumentStore
    {
        public Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) =>
            collection == Collections.Executors && id == Unreadable
                ? throw new JsonException("'b' is an invalid start of a value. LineNumber: 0 | BytePositionInLine: 0.")
                : inner.GetAsync(collection, id, ct);

        public Task<StoredDocument> CreateAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.CreateAsync(collection, id, body, ct);

        public Task<StoredDocument> ReplaceAsync(string collection, string id, JsonObject body, string? expectedRevision, CancellationToken ct = default) =>
            inner.ReplaceAsync(collection, id, body, expectedRevision, ct);

        public Task<StoredDocument> UpsertAsync(string collection, string id, JsonObject body, CancellationToken ct = default) => inner.UpsertAsync(collection, id, body, ct);

        public Task<StoredDocument?> DeleteAsync(string collection, string id, string? expectedRevision, CancellationToken ct = default) =>
            inner.DeleteAsync(collection, id, expectedRevision, ct);

        public Task<IReadOnlyList<StoredDocument>> QueryAsync(string collection, DocumentQuery query, CancellationToken ct = default) => inner.QueryAsync(collection, query, ct);
    }
}
