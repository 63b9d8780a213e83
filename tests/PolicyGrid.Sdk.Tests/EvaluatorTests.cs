using System.Text.Json.Nodes;
using PolicyGrid.Sdk.Client;
using PolicyGrid.Sdk.Evaluation;
using PolicyGrid.TestSupport;

namespace PolicyGrid.Sdk.Tests;

/// <summary>LocalPolicyEvaluator (in-process, embedded CPython) against a loopback registry.</summary>
public sealed class EvaluatorTests : LoopbackRegistryTests
{
    public const string Uri = "ip_allowlist:1.0-beta";

    public static JsonObject Document() => new()
    {
        ["policy_rule_uri"] = Uri, ["name"] = "ip_allowlist", ["version"] = "1.0", ["release_tag"] = "beta",
        ["type"] = "python_class_v1", ["status"] = "active",
        ["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.1") },
        ["policy_settings"] = new JsonObject(),
        ["policy_input_schema"] = new JsonObject { ["ip"] = new JsonObject { ["type"] = "string", ["required"] = true, ["pattern"] = @"^\d{1,3}(\.\d{1,3}){3}$" } },
        ["policy_parameters_schema"] = new JsonObject { ["local_allowlist"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["type"] = "string" } } },
    };

    private PolicyGridClient Client(Uri? url = null) => new(url ?? _registry.Url, null, TimeSpan.FromSeconds(5));

    private async Task<LocalPolicyEvaluator> Evaluator(JsonObject? parameters = null, TimeSpan? revalidate = null, Uri? url = null)
    {
        var e = await LocalPolicyEvaluator.CreateAsync(Client(url), new LocalPolicyEvaluatorOptions
        {
            PolicyRuleUri = Uri, Parameters = parameters, CacheDirectory = _cache,
            RevalidateInterval = revalidate ?? TimeSpan.FromHours(1),
        }, TestContext.Current.CancellationToken);
        _made.Add(e);
        return e;
    }

    private static JsonObject Ip(string ip) => new() { ["ip"] = ip };

    [Fact]
    public async Task Evaluates_in_process_with_the_stored_parameters()
    {
        var ev = await Evaluator();
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        var denied = ev.ExecutePolicyRule(Ip("10.9.9.9"));
        denied["allowed"]!.GetValue<bool>().ShouldBeFalse();
        denied["reason"]!.GetValue<string>().ShouldBe("denied");
        denied["input_data"]!["ip"]!.GetValue<string>().ShouldBe("10.9.9.9");
    }

    [Fact]
    public async Task Without_dynamic_code_in_process_mode_is_refused_at_creation_naming_what_to_use_and_the_other_modes_work()
    {
        // In an app published with PublishAot=true the first load threw pythonnet's raw PlatformNotSupportedException,
        // after the policy and its bundle had been fetched.
        var e = await Should.ThrowAsync<PlatformNotSupportedException>(() => LocalPolicyEvaluator.CreateAsync(Client(), new LocalPolicyEvaluatorOptions
        {
            PolicyRuleUri = Uri, CacheDirectory = _cache, DynamicCodeSupported = () => false,
        }, TestContext.Current.CancellationToken));

        e.Message.ShouldStartWith("Isolation = LocalIsolation.InProcess (the default of Mode = EvaluationMode.Local) embeds CPython through pythonnet");
        e.Message.ShouldContain("RuntimeFeature.IsDynamicCodeSupported is false, as in an app published with PublishAot=true");
        e.Message.ShouldContain("Use Isolation = LocalIsolation.WorkerProcess");
        e.Message.ShouldContain("or Mode = EvaluationMode.Remote");
        _registry.PolicyReads.ShouldBe(0);

        var isolated = await LocalPolicyEvaluator.CreateAsync(Client(), new LocalPolicyEvaluatorOptions
        {
            // The process's own cache (the worker, under its own uid, may read it; the test's private _cache it may not).
            PolicyRuleUri = Uri, Isolation = LocalIsolation.WorkerProcess, DynamicCodeSupported = () => false,
        }, TestContext.Current.CancellationToken);
        _made.Add(isolated);
        isolated.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_CacheDirectory_that_is_a_file_or_under_one_is_an_argument_error_naming_it()
    {
        // It was a bare IOException ("The file ... already exists"), where the Python SDK names cache_dir.
        var aFile = Path.Combine(_cache, "not-a-dir");
        File.WriteAllText(aFile, "x");
        foreach (var cache in new[] { aFile, Path.Combine(aFile, "bundles") })
        {
            var e = await Should.ThrowAsync<ArgumentException>(() => LocalPolicyEvaluator.CreateAsync(Client(), new LocalPolicyEvaluatorOptions
            {
                PolicyRuleUri = Uri, CacheDirectory = cache,
            }, TestContext.Current.CancellationToken));
            e.Message.ShouldContain($"CacheDirectory '{cache}' cannot hold bundles");
        }
    }

    [Fact]
    public async Task Option_and_call_parameters_override_the_stored_ones()
    {
        var ev = await Evaluator(new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.2") });
        ev.ExecutePolicyRule(Ip("10.0.0.2"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeFalse();
        ev.ExecutePolicyRule(Ip("10.0.0.7"), new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.7") })["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task The_bundle_is_downloaded_once()
    {
        var ev = await Evaluator();
        for (var i = 0; i < 50; i++) ev.ExecutePolicyRule(Ip("10.0.0.1"));
        (await Evaluator()).ExecutePolicyRule(Ip("10.0.0.1"));
        _registry.BundleReads.ShouldBe(1);
    }

    [Fact]
    public async Task A_bundle_that_does_not_match_its_hash_is_refused()
    {
        _registry.Tampered = TestBundles.Zip(("code/function.py", "class AIOSv1PolicyRule: pass  # tampered\n"));
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Evaluator());
        e.Code.ShouldBe("backend_error");
        e.Reason.ShouldContain("failed verification");
    }

    [Fact]
    public async Task An_unpinned_code_url_that_serves_other_bytes_than_the_recorded_code_sha256_is_refused()
    {
        using var bundles = new LoopbackBundleServer();
        var url = bundles.Url("/allowlist.zip");
        var recorded = TestBundles.AllowlistZip();
        var other = TestBundles.Zip(("code/function.py", "class AIOSv1PolicyRule: pass  # other code at the same URL\n"));
        bundles.Serve("/allowlist.zip", other);
        _registry.Update(doc => { doc["code"] = url; doc["code_sha256"] = Sha256(recorded); });

        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Evaluator());
        e.Code.ShouldBe("backend_error");
        e.Reason.ShouldContain(url);
        e.Reason.ShouldContain($"has sha256 {Sha256(other)}, not the expected {Sha256(recorded)}");

        bundles.Serve("/allowlist.zip", recorded); // the bytes the registry recorded run
        (await Evaluator()).ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));

    [Fact]
    public async Task Context_persists_and_management_reaches_the_held_instance()
    {
        var ev = await Evaluator();
        ev.ExecutePolicyRule(Ip("10.0.0.1"));
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["calls"]!.GetValue<int>().ShouldBe(2);
        ev.ExecuteManagementCommand("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray("10.5.5.5") });
        ev.ExecutePolicyRule(Ip("10.5.5.5"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        ev.ExecuteManagementCommand("get_state")!["local_allowlist"]![0]!.GetValue<string>().ShouldBe("10.5.5.5");
    }

    [Fact]
    public async Task Bad_input_is_refused_before_the_policy_runs_naming_the_field()
    {
        var ev = await Evaluator();
        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("not-an-ip")));
        (e.Status, e.Code).ShouldBe((400, "validation_failed"));
        e.Reason.ShouldContain("input_data.ip: does not match");
        Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(new JsonObject())).Reason.ShouldContain("input_data.ip: is required");
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["calls"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task Bad_parameter_override_is_refused()
    {
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Evaluator(new JsonObject { ["local_allowlist"] = "10.0.0.1" }));
        e.Reason.ShouldContain("parameters.local_allowlist: must be an array"); // as an executor names it
        e.Reason.ShouldNotContain("policy_parameters");
    }

    [Fact]
    public async Task A_policy_exception_is_a_422_naming_its_type()
    {
        var ev = await Evaluator();
        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecuteManagementCommand("explode"));
        (e.Status, e.Code).ShouldBe((422, "policy_error"));
        e.Reason.ShouldContain("ValueError: unknown action explode");
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task An_update_reaches_the_evaluator_when_it_revalidates()
    {
        var ev = await Evaluator();
        ev.ExecutePolicyRule(Ip("10.0.0.9"))["allowed"]!.GetValue<bool>().ShouldBeFalse();
        _registry.Update(d => d["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.9") });
        ev.ExecutePolicyRule(Ip("10.0.0.9"))["allowed"]!.GetValue<bool>().ShouldBeFalse(); // within the interval: held revision
        _registry.PolicyReads.ShouldBe(1);
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.9"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Past_the_interval_calls_revalidate_in_the_background()
    {
        var ev = await Evaluator(revalidate: TimeSpan.FromMilliseconds(50));
        _registry.Update(d => d["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.9") });
        var deadline = DateTime.UtcNow.AddSeconds(10);
        var allowed = false;
        while (!allowed && DateTime.UtcNow < deadline)
        {
            allowed = ev.ExecutePolicyRule(Ip("10.0.0.9"))["allowed"]!.GetValue<bool>();
            if (!allowed) await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        allowed.ShouldBeTrue();
    }

    [Fact]
    public async Task Context_survives_an_update_that_reloads_the_policy()
    {
        var ev = await Evaluator();
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["calls"]!.GetValue<int>().ShouldBe(1);
        _registry.Update(d => d["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.9") });
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        var after = ev.ExecutePolicyRule(Ip("10.0.0.9"));
        after["allowed"]!.GetValue<bool>().ShouldBeTrue(); // the new parameters are in force
        after["calls"]!.GetValue<int>().ShouldBe(2); // and a count kept in context goes on, as on the servers and in the Python SDK
    }

    [Fact]
    public async Task A_disposed_evaluator_refuses_calls()
    {
        var ev = await Evaluator();
        await ev.DisposeAsync();
        Should.Throw<ObjectDisposedException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1")));
        await Should.ThrowAsync<ObjectDisposedException>(() => ev.ExecuteManagementCommandAsync("get_state"));
    }

    [Fact]
    public async Task A_cancelled_call_does_not_run_the_policy_in_process()
    {
        // As in WorkerProcess and remote mode: in-process mode ran the policy (and counted the call in its context) for a
        // request whose token had already fired, e.g. one the HTTP client had given up on.
        var ev = await Evaluator();
        ev.ExecutePolicyRule(Ip("10.0.0.1"));
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => ev.ExecutePolicyRuleAsync(Ip("10.0.0.1"), ct: cancelled.Token));
        await Should.ThrowAsync<OperationCanceledException>(() => ev.ExecuteManagementCommandAsync("update_local_allowlist",
            new JsonObject { ["ips"] = new JsonArray("10.5.5.5") }, cancelled.Token));
        var next = ev.ExecutePolicyRule(Ip("10.0.0.1"));
        next["calls"]!.GetValue<int>().ShouldBe(2);
        next["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_call_waiting_behind_a_running_one_in_process_ends_when_its_token_fires()
    {
        // Calls on one in-process evaluator run one at a time. One waiting behind a long call ignored its token: it waited
        // the long call out and then ran the policy anyway.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        _registry.ReplaceBundle(TestBundles.Zip(("code/function.py", """
            import socket
            class AIOSv1PolicyRule:
                def __init__(self, r, s, p): pass
                def eval(self, p, input_data, context):
                    context["calls"] = context.get("calls", 0) + 1
                    if "port" in input_data:  # held until the test sends a byte
                        with socket.create_connection(("127.0.0.1", input_data["port"])) as s:
                            s.recv(1)
                    return {"calls": context["calls"]}
            """)));
        var ev = await Evaluator();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        var running = Task.Run(() => ev.ExecutePolicyRule(new JsonObject { ["ip"] = "10.0.0.1", ["port"] = port }), TestContext.Current.CancellationToken);
        using var held = await listener.AcceptSocketAsync(TestContext.Current.CancellationToken); // the first call is inside eval now
        try
        {
            using var cts = new CancellationTokenSource();
            var waiting = Task.Run(() => ev.ExecutePolicyRuleAsync(Ip("10.0.0.1"), ct: cts.Token), TestContext.Current.CancellationToken);
            await cts.CancelAsync();
            await Should.ThrowAsync<OperationCanceledException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        }
        finally
        {
            held.Send([1]);
        }
        (await running)["calls"]!.GetValue<int>().ShouldBe(1);
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["calls"]!.GetValue<int>().ShouldBe(2); // the cancelled call never ran
    }

    [Fact]
    public async Task New_code_is_fetched_and_loaded_on_update()
    {
        var ev = await Evaluator();
        _registry.ReplaceBundle(TestBundles.Zip(("code/function.py", """
            class AIOSv1PolicyRule:
                def __init__(self, r, s, p): pass
                def eval(self, p, i, c): return {"allowed": True, "reason": "v2"}
            """)));
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("1.1.1.1"))["reason"]!.GetValue<string>().ShouldBe("v2");
    }

    [Fact]
    public async Task New_code_brings_its_own_sibling_modules_and_another_policys_are_its_own()
    {
        // One CPython holds one `helpers` module: an update whose helpers.py changed went on running the old one, and a
        // second policy with a helpers.py of its own ran the first policy's.
        static byte[] Bundle(string reason) => TestBundles.Zip(
            ("code/function.py", $$"""
                import helpers
                class AIOSv1PolicyRule:
                    def __init__(self, r, s, p): pass
                    def eval(self, p, i, c): return {"allowed": True, "reason": helpers.REASON}
                # {{reason}}
                """),
            ("code/helpers.py", $"REASON = '{reason}'\n"));
        var id = Guid.NewGuid().ToString("N")[..8]; // other tests' bundles in this process must not be these
        _registry.ReplaceBundle(Bundle($"v1-{id}"));
        var ev = await Evaluator();
        ev.ExecutePolicyRule(Ip("1.1.1.1"))["reason"]!.GetValue<string>().ShouldBe($"v1-{id}");
        _registry.ReplaceBundle(Bundle($"v2-{id}"));
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("1.1.1.1"))["reason"]!.GetValue<string>().ShouldBe($"v2-{id}");

        var otherDocument = Document();
        otherDocument["policy_rule_uri"] = "other:1.0";
        using var other = new LoopbackRegistry(otherDocument, Bundle($"other-{id}"));
        await using var otherEv = await LocalPolicyEvaluator.CreateAsync(Client(other.Url), new LocalPolicyEvaluatorOptions
        {
            PolicyRuleUri = "other:1.0", CacheDirectory = _cache, RevalidateInterval = TimeSpan.FromHours(1),
        }, TestContext.Current.CancellationToken);
        otherEv.ExecutePolicyRule(Ip("1.1.1.1"))["reason"]!.GetValue<string>().ShouldBe($"other-{id}");
        ev.ExecutePolicyRule(Ip("1.1.1.1"))["reason"]!.GetValue<string>().ShouldBe($"v2-{id}"); // what it imported stays its own
    }

    [Fact]
    public async Task A_retired_policy_answers_410()
    {
        var ev = await Evaluator();
        _registry.Update(d => d["status"] = "retired");
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1")));
        (e.Status, e.Code).ShouldBe((410, "retired"));
    }

    [Fact]
    public async Task A_policy_retired_when_the_evaluator_was_made_serves_once_it_is_active_again()
    {
        _registry.Update(d => d["status"] = "retired");
        var ev = await Evaluator();
        Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1"))).Code.ShouldBe("retired");
        _registry.Update(d => d["status"] = "active"); // nothing was loaded for the retired revision: it used to stay null
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_policy_retired_with_new_parameters_serves_them_once_it_is_active_again()
    {
        var ev = await Evaluator();
        _registry.Update(d => { d["status"] = "retired"; d["policy_parameters"] = new JsonObject { ["local_allowlist"] = new JsonArray("10.0.0.9") }; });
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.9"))).Code.ShouldBe("retired");
        _registry.Update(d => d["status"] = "active");
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.9"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_deprecated_policy_still_runs_and_says_so()
    {
        var ev = await Evaluator();
        ev.Deprecated.ShouldBeFalse();
        _registry.Update(d => d["status"] = "deprecated");
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.Deprecated.ShouldBeTrue();
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_deleted_policy_answers_not_found()
    {
        var ev = await Evaluator();
        _registry.Update(d => d["policy_rule_uri"] = "something:else-x");
        await Should.ThrowAsync<PolicyGridApiException>(() => ev.RefreshAsync(TestContext.Current.CancellationToken));
        Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1"))).Code.ShouldBe("not_found");
    }

    [Fact]
    public async Task Local_mode_keeps_serving_a_held_policy_while_the_registry_is_away()
    {
        var ev = await Evaluator();
        _registry.Down = true; // the store behind the registry fails: 503
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
        _registry.Dispose(); // nothing listens at all
        await ev.RefreshAsync(TestContext.Current.CancellationToken);
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Local_mode_with_nothing_held_fails_closed()
    {
        await Should.ThrowAsync<PolicyGridUnreachableException>(() => Evaluator(url: new Uri($"http://127.0.0.1:{LoopbackPorts.Free()}/")));
    }

    [Fact]
    public async Task Remote_mode_fails_closed_when_unreachable()
    {
        await using var ev = await LocalPolicyEvaluator.CreateAsync(Client(new Uri($"http://127.0.0.1:{LoopbackPorts.Free()}/")),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, Mode = EvaluationMode.Remote }, TestContext.Current.CancellationToken);
        Should.Throw<PolicyGridUnreachableException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1")));
    }

    [Fact]
    public async Task Management_commands_are_checked_against_the_policys_list_as_executors_do()
    {
        _registry.Update(doc => doc["management_commands_schema"] = new JsonArray(
            new JsonObject { ["name"] = "update_local_allowlist", ["schema"] = new JsonObject { ["ips"] = new JsonObject { ["type"] = "array", ["required"] = true, ["items"] = new JsonObject { ["type"] = "string" } } } },
            new JsonObject { ["name"] = "get_state", ["schema"] = new JsonObject() }));
        var ev = await Evaluator();
        var unknown = Should.Throw<PolicyGridApiException>(() => ev.ExecuteManagementCommand("explode"));
        (unknown.Status, unknown.Code).ShouldBe((400, "validation_failed"));
        unknown.Reason.ShouldContain("'explode' is not a management command of ip_allowlist:1.0-beta (known: update_local_allowlist, get_state)");
        var badData = Should.Throw<PolicyGridApiException>(() => ev.ExecuteManagementCommand("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray(5) }));
        badData.Reason.ShouldContain("data.ips[0]");
        ev.ExecuteManagementCommand("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray("10.5.5.5") })!["local_allowlist"]![0]!.GetValue<string>().ShouldBe("10.5.5.5");
    }

    [Fact]
    public async Task Input_or_management_data_that_is_no_object_is_the_executors_400_not_a_policy_error()
    {
        // Without an input template, a list reached the policy and came back as 422 "AttributeError: 'list' object has no attribute 'get'".
        _registry.Update(doc => doc["policy_input_schema"] = new JsonObject());
        var ev = await Evaluator();
        foreach (var (input, says) in new (JsonNode?, string)[]
        {
            (new JsonArray(Ip("10.0.0.1")), "input_data: must be a JSON object, not a JSON array"),
            (JsonValue.Create("10.0.0.1"), "input_data: must be a JSON object, not a JSON string"),
            (null, "input_data: is required (a JSON object)"),
        })
        {
            var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(input));
            (e.Status, e.Code, e.Reason).ShouldBe((400, "validation_failed", says));
        }
        var data = Should.Throw<PolicyGridApiException>(() => ev.ExecuteManagementCommand("get_state", new JsonArray(1)));
        (data.Status, data.Code, data.Reason).ShouldBe((400, "validation_failed", "data: must be a JSON object, not a JSON array"));
        ev.ExecuteManagementCommand("get_state", null).ShouldBeOfType<JsonObject>();
        ev.ExecutePolicyRule(Ip("10.0.0.1"))["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task A_NaN_in_the_input_is_a_400_naming_its_path_in_both_modes()
    {
        var held = await Evaluator();
        await using var remote = await LocalPolicyEvaluator.CreateAsync(Client(),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, Mode = EvaluationMode.Remote }, TestContext.Current.CancellationToken);
        foreach (var ev in new[] { held, remote })
        {
            var input = new JsonObject { ["ip"] = "10.0.0.1", ["score"] = new JsonArray(1.5, double.NaN) };
            var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(input));
            (e.Status, e.Code).ShouldBe((400, "validation_failed"));
            e.Reason.ShouldContain("input_data.score[1]");
            Should.Throw<PolicyGridApiException>(() => ev.ExecuteManagementCommand("get_state", new JsonObject { ["x"] = double.PositiveInfinity }))
                .Reason.ShouldContain("data.x");
        }
    }

    private static JsonNode Nested(int levels)
    {
        JsonNode node = new JsonObject();
        for (var i = 1; i < levels; i++) node = new JsonObject { ["x"] = node };
        return node;
    }

    [Fact]
    public async Task Input_nested_deeper_than_a_server_takes_is_a_400_naming_it_in_both_modes()
    {
        // In-process mode ran the policy on 32 to 999 levels a server refuses; from 1000 every mode threw the
        // serializer's InvalidOperationException.
        var held = await Evaluator();
        await using var remote = await LocalPolicyEvaluator.CreateAsync(Client(),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, Mode = EvaluationMode.Remote }, TestContext.Current.CancellationToken);
        foreach (var ev in new[] { held, remote })
        foreach (var levels in new[] { 31, 5000 }) // under input_data: 32 levels, one past what a server takes, and far past
        {
            var e = Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(new JsonObject { ["ip"] = "10.0.0.1", ["y"] = Nested(levels) }));
            (e.Status, e.Code).ShouldBe((400, "validation_failed"));
            e.Reason.ShouldStartWith("input_data.y.x");
            e.Reason.ShouldContain("nests deeper than 31 levels");
            Should.Throw<PolicyGridApiException>(() => ev.ExecuteManagementCommand("get_state", new JsonObject { ["y"] = Nested(levels) }))
                .Reason.ShouldContain("nests deeper than 31 levels");
        }
        // 31 levels (input_data and 30 below it) are what a server takes, and they run
        held.ExecutePolicyRule(new JsonObject { ["ip"] = "10.0.0.1", ["y"] = Nested(30) })["allowed"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task Text_with_a_lone_surrogate_is_a_400_naming_it_in_every_mode_before_anything_runs_or_is_sent()
    {
        // The writer wrote a lone surrogate as U+FFFD: the policy (locally, or on the executor) saw other text than the
        // caller gave, and answered as if it were the caller's. The Python SDK refuses it with these words.
        var ct = TestContext.Current.CancellationToken;
        var inProcess = await Evaluator();
        await using var worker = await LocalPolicyEvaluator.CreateAsync(Client(), new LocalPolicyEvaluatorOptions
        {
            PolicyRuleUri = Uri, Isolation = LocalIsolation.WorkerProcess,
            WorkerPool = new Runtime.Hosting.WorkerPoolOptions { Workers = 1, WorkDirectory = Path.Combine(Path.GetTempPath(), "pg-sdk-workers") },
        }, ct);
        // Remote mode sends to the loopback registry, which runs nothing: a call that got there would fail otherwise.
        await using var remote = await LocalPolicyEvaluator.CreateAsync(Client(),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, Mode = EvaluationMode.Remote }, ct);
        foreach (var ev in new[] { inProcess, worker, remote })
        {
            var value = Should.Throw<PolicyGridApiException>(() =>
                ev.ExecutePolicyRule(new JsonObject { ["ip"] = "10.0.0.1", ["x"] = new JsonArray("fine", "a\ud800b") }));
            (value.Status, value.Code).ShouldBe((400, "validation_failed"));
            value.Reason.ShouldBe("input_data.x[1]: '\\ud800' is a lone surrogate, which no JSON text can hold");
            value.Errors![0]!["path"]!.GetValue<string>().ShouldBe("input_data.x[1]");

            Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(new JsonObject { ["ip"] = "10.0.0.1", ["y"] = new JsonObject { ["k\udc00"] = 1 } }))
                .Reason.ShouldBe("input_data.y: key '\\udc00' is a lone surrogate, which no JSON text can hold");
            Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(Ip("10.0.0.1"), new JsonObject { ["local_allowlist"] = new JsonArray("\ud800") }))
                .Reason.ShouldBe("parameters.local_allowlist[0]: '\\ud800' is a lone surrogate, which no JSON text can hold");
            // Parsed from JSON text holding the escape: it threw the parser's InvalidOperationException
            Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(JsonNode.Parse("{\"ip\": \"10.0.0.1\", \"x\": \"\\ud800\"}")))
                .Reason.ShouldBe("input_data.x: holds an escaped lone surrogate (\\ud800-\\udfff without its pair), which no JSON text can hold");
            Should.Throw<PolicyGridApiException>(() => ev.ExecutePolicyRule(JsonNode.Parse("{\"ip\": \"10.0.0.1\", \"y\": {\"\\udc00\": 1}}")))
                .Reason.ShouldStartWith("input_data.y: a key holds an escaped lone surrogate");
            var data = await Should.ThrowAsync<PolicyGridApiException>(() =>
                ev.ExecuteManagementCommandAsync("update_local_allowlist", new JsonObject { ["ips"] = new JsonArray(JsonValue.Create('\udfff')) }, ct));
            (data.Status, data.Reason).ShouldBe((400, "data.ips[0]: '\\udfff' is a lone surrogate, which no JSON text can hold"));
        }
        foreach (var (options, reason) in new[]
        {
            (new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, CacheDirectory = _cache, Parameters = new JsonObject { ["local_allowlist"] = new JsonArray("\ud800") } },
                "parameters.local_allowlist[0]: '\\ud800' is a lone surrogate, which no JSON text can hold"),
            (new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, Mode = EvaluationMode.Remote, ExecutorId = "local", Settings = new JsonObject { ["\udbff"] = "x" } },
                "settings: key '\\udbff' is a lone surrogate, which no JSON text can hold"),
        })
            (await Should.ThrowAsync<PolicyGridApiException>(() => LocalPolicyEvaluator.CreateAsync(Client(), options, ct))).Reason.ShouldBe(reason);
        _registry.PolicyReads.ShouldBe(2); // the two local evaluators' loads: nothing else was read or sent
        // A surrogate pair is one character, and arrives as it was sent
        inProcess.ExecutePolicyRule(new JsonObject { ["ip"] = "10.9.9.9", ["note"] = "ok \ud83d\ude00" })["input_data"]!["note"]!.GetValue<string>().ShouldBe("ok \ud83d\ude00");
    }

    [Fact]
    public async Task Bad_options_are_refused_naming_the_option()
    {
        var ct = TestContext.Current.CancellationToken;
        (await Should.ThrowAsync<ArgumentException>(() => LocalPolicyEvaluator.CreateAsync(Client(),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, Mode = EvaluationMode.Remote, ExecutorId = "" }, ct))).Message.ShouldContain("ExecutorId");
        (await Should.ThrowAsync<ArgumentException>(() => LocalPolicyEvaluator.CreateAsync(Client(),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, Mode = (EvaluationMode)7 }, ct))).Message.ShouldContain("Mode");
        (await Should.ThrowAsync<ArgumentException>(() => LocalPolicyEvaluator.CreateAsync(Client(),
            new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, RevalidateInterval = TimeSpan.FromSeconds(-1) }, ct))).Message.ShouldContain("RevalidateInterval");
        foreach (var deadline in new[] { TimeSpan.Zero, TimeSpan.FromSeconds(1e7) }) // 1e7 s failed every call inside the pool
            (await Should.ThrowAsync<ArgumentException>(() => LocalPolicyEvaluator.CreateAsync(Client(),
                new LocalPolicyEvaluatorOptions { PolicyRuleUri = Uri, Isolation = LocalIsolation.WorkerProcess, CallDeadline = deadline }, ct))).Message.ShouldContain("CallDeadline");
        Should.Throw<ArgumentException>(() => new PolicyGridClient(new Uri("ftp://127.0.0.1:10000"))).Message.ShouldContain("http(s)");
        Should.Throw<ArgumentException>(() => new PolicyGridClient(new Uri("/relative", UriKind.Relative))).Message.ShouldContain("http(s)");
        Should.Throw<ArgumentException>(() => new PolicyGridClient(_registry.Url, null, TimeSpan.Zero)).Message.ShouldContain("Timeout");
        _registry.PolicyReads.ShouldBe(0);
    }

    [Fact]
    public async Task A_bundle_without_the_class_is_a_policy_error()
    {
        _registry.ReplaceBundle(TestBundles.Zip(("code/function.py", "class Other: pass\n")));
        var e = await Should.ThrowAsync<PolicyGridApiException>(() => Evaluator());
        e.Code.ShouldBe("policy_error");
        e.Reason.ShouldBe($"policy {Uri} cannot be loaded: code/function.py defines no AIOSv1PolicyRule class"); // as the servers word it
    }
}
