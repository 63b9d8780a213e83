using System.Text.Json.Nodes;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;
using PolicyGrid.Embedded.Storage;
using PolicyGrid.Runtime.Execution;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// A call that waited in the worker pool asks its policy's check before it starts. Over a store without a write counter
/// (Dapr's state store) the check could never hold, so every batch with a waited call read the policy again, a sidecar
/// round trip before each batch of a busy worker; it now holds while the store confirmed the policy within RecheckAfter.
/// </summary>
public sealed class PolicyCatalogCheckTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string dir = Directory.CreateTempSubdirectory("pg-catalog-check-").FullName;
    private readonly SqliteDocumentStore store;

    public PolicyCatalogCheckTests() => store = new SqliteDocumentStore(new SqliteDatabase(Path.Combine(dir, "policygrid.db")));

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private sealed class WithoutCounter(SqliteDocumentStore inner) : DecisionLogTests.DelegatingStore(inner);

    private static JsonObject Policy(string status = "active") => new()
    {
        ["name"] = "checked", ["version"] = "1.0", ["release_tag"] = "test", ["code"] = "bundle://sha256/" + new string('0', 64),
        ["type"] = "python_class_v1", ["status"] = status,
    };

    [Fact]
    public async Task Without_a_write_counter_a_check_holds_while_the_store_confirmed_the_policy_lately_and_asks_it_again_after()
    {
        await store.UpsertAsync(Collections.Policies, "checked:1.0-test", Policy(), Ct);

        var lately = await new PolicyCatalog(new WithoutCounter(store)).GetCheckedAsync("checked:1.0-test", Ct);
        lately.StillHolds.ShouldBeTrue("the store confirmed the policy a moment ago: asking it again for each waited batch costs a round trip");

        var stale = await new PolicyCatalog(new WithoutCounter(store)) { RecheckAfter = TimeSpan.Zero }.GetCheckedAsync("checked:1.0-test", Ct);
        stale.StillHolds.ShouldBeFalse();
        (await stale.RecheckAsync()).ShouldBeNull();
        await store.UpsertAsync(Collections.Policies, "checked:1.0-test", Policy("retired"), Ct);
        var refused = (await stale.RecheckAsync()).ShouldBeOfType<PolicyGridException>();
        refused.Status.ShouldBe(410);
        refused.Message.ShouldContain("was retired while this call waited for a policy worker");
    }

    // Policy reads answer 503 while Unreachable is set.
    private sealed class Unreachable(SqliteDocumentStore inner) : DecisionLogTests.DelegatingStore(inner)
    {
        public bool Now { get; set; }

        public override Task<StoredDocument?> GetAsync(string collection, string id, CancellationToken ct = default) => Now && collection == Collections.Policies
            ? throw new PolicyGridException(503, ErrorCodes.BackendUnavailable, "the policy store is unreachable")
            : Inner.GetAsync(collection, id, ct);
    }

    [Fact]
    public async Task A_functions_check_refuses_a_waited_call_whose_policy_status_cannot_be_read_and_lets_a_deleted_policys_snapshot_run()
    {
        // It failed open: with the store unreachable, a call that waited for a worker started although its policy might be
        // retired, while the same function's turn check (and the Dapr actor's) refused it.
        await store.UpsertAsync(Collections.Policies, "checked:1.0-test", Policy(), Ct);
        var documents = new Unreachable(store);
        var check = new PolicyCatalog(documents) { RecheckAfter = TimeSpan.Zero }.RetiredCheck("checked:1.0-test", () => "retired meanwhile");
        (await check.RecheckAsync()).ShouldBeNull();

        documents.Now = true;
        var refused = (await check.RecheckAsync()).ShouldBeOfType<PolicyGridException>("a policy whose status cannot be read is not run");
        (refused.Status, refused.Code).ShouldBe((503, ErrorCodes.BackendUnavailable));
        refused.Message.ShouldContain("the policy store is unreachable");
        check.StillHolds.ShouldBeFalse("a refusal confirms nothing");

        documents.Now = false;
        await store.DeleteAsync(Collections.Policies, "checked:1.0-test", null, Ct);
        (await check.RecheckAsync()).ShouldBeNull("deleted since it was deployed: the deployment's snapshot runs on");
    }

    [Fact]
    public async Task A_deleted_policy_found_gone_by_a_call_leaves_nothing_parsed_behind_with_or_without_a_write_counter()
    {
        foreach (var catalog in new[] { new PolicyCatalog(store), new PolicyCatalog(new WithoutCounter(store)) })
        {
            await store.UpsertAsync(Collections.Policies, "checked:1.0-test", Policy(), Ct);
            await catalog.GetRunnableAsync("checked:1.0-test", Ct);
            catalog.ParsedCount.ShouldBe(1);

            await store.DeleteAsync(Collections.Policies, "checked:1.0-test", null, Ct);
            (await Should.ThrowAsync<PolicyGridException>(() => catalog.GetRunnableAsync("checked:1.0-test", Ct))).Status.ShouldBe(404);

            catalog.ParsedCount.ShouldBe(0);
        }
    }

    [Fact]
    public async Task Forgetting_a_policy_drops_what_was_parsed_of_it_and_its_next_call_reads_the_store()
    {
        var catalog = new PolicyCatalog(new WithoutCounter(store));
        await store.UpsertAsync(Collections.Policies, "checked:1.0-test", Policy(), Ct);
        await catalog.GetRunnableAsync("checked:1.0-test", Ct);

        catalog.Forget("checked:1.0-test");

        catalog.ParsedCount.ShouldBe(0);
        (await catalog.GetRunnableAsync("checked:1.0-test", Ct)).PolicyRuleUri.ShouldBe("checked:1.0-test");
    }
}
