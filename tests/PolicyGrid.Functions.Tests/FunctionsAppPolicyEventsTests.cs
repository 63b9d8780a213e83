using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Functions;
using PolicyGrid.Runtime.Execution;
using Shouldly;

namespace PolicyGrid.Functions.Tests;

/// <summary>
/// The policy-functions app hears of deleted and retired policies on policy-events (it had no subscription at all), and
/// gives back what it held for them once its store confirms it.
/// </summary>
public sealed class FunctionsAppPolicyEventsTests : IAsyncDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-functions-events-").FullName;
    private readonly SqliteDocumentStore documents;
    private readonly FunctionsApp app;

    public FunctionsAppPolicyEventsTests()
    {
        documents = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));
        app = new FunctionsApp(documents);
    }

    public async ValueTask DisposeAsync()
    {
        await app.DisposeAsync();
        Directory.Delete(dir, recursive: true);
    }

    private sealed class FunctionsApp(IDocumentStore documents) : WebApplicationFactory<PolicyFunctionActor>
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder) => builder.ConfigureTestServices(services =>
        {
            services.RemoveAll<IDocumentStore>();
            services.AddSingleton(documents);
        });
    }

    private async Task<string> Deliver(JsonObject data)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/dapr/events/policy-events")
        {
            Content = new StringContent(new JsonObject
            {
                ["specversion"] = "1.0", ["id"] = Guid.NewGuid().ToString(), ["source"] = "policy-registry", ["type"] = "io.policygrid.policy.gone",
                ["topic"] = "policy-events", ["pubsubname"] = "policygrid-pubsub", ["datacontenttype"] = "application/json", ["data"] = data,
            }.ToJsonString(), Encoding.UTF8),
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/cloudevents+json");
        var answer = await app.CreateClient().SendAsync(request, Ct);
        answer.StatusCode.ShouldBe(HttpStatusCode.OK);
        return JsonNode.Parse(await answer.Content.ReadAsStringAsync(Ct))!["status"]!.GetValue<string>();
    }

    [Fact]
    public async Task The_app_subscribes_to_policy_events_and_a_deleted_policy_leaves_nothing_parsed_behind()
    {
        var subscriptions = JsonNode.Parse(await app.CreateClient().GetStringAsync("/dapr/subscribe", Ct))!;
        JsonNode.DeepEquals(subscriptions, JsonNode.Parse("""
            [{"pubsubname": "policygrid-pubsub", "topic": "policy-events", "route": "/dapr/events/policy-events"}]
            """)).ShouldBeTrue(subscriptions.ToJsonString());

        var uri = "gone:1.0-test";
        await documents.UpsertAsync(Collections.Policies, uri, PolicyRule.FromJson(new JsonObject
        {
            ["name"] = "gone", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = "bundle://sha256/" + new string('0', 64), ["type"] = "python_class_v1",
        }).ToJson(), Ct);
        var catalog = app.Services.GetRequiredService<PolicyCatalog>();
        await catalog.GetRunnableAsync(uri, Ct);

        (await Deliver(new JsonObject { ["policy_rule_uri"] = uri, ["change"] = "deleted" })).ShouldBe("SUCCESS");
        catalog.ParsedCount.ShouldBe(1); // the store still holds it: a late or foreign event changes nothing

        await documents.DeleteAsync(Collections.Policies, uri, null, Ct);
        (await Deliver(new JsonObject { ["policy_rule_uri"] = uri, ["change"] = "deleted" })).ShouldBe("SUCCESS");
        catalog.ParsedCount.ShouldBe(0);

        (await Deliver(new JsonObject { ["change"] = "deleted" })).ShouldBe("DROP");
    }
}
