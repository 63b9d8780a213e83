using System.Text.Json.Nodes;
using PolicyGrid.Core.Errors;
using PolicyGrid.Runtime.Bundles;
using PolicyGrid.Runtime.Hosting;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

/// <summary>
/// Authors' mistakes whose answer the worker host itself has to write: each is a 422 policy_error naming the problem,
/// and the worker (with the warm instance) keeps serving. These used to kill the worker (policy_crashed) or be
/// reported as something else.
/// </summary>
public sealed class PolicyMistakeAnswersTests(PoolFixture fixture) : IClassFixture<PoolFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Source = """
        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("no text for you")

        def nested(levels):
            top = cur = {}
            for _ in range(levels):
                cur["a"] = {}
                cur = cur["a"]
            return top

        class AIOSv1PolicyRule:
            def __init__(self, rule_id, settings, parameters):
                self.calls = 0

            def eval(self, parameters, input_data, context):
                self.calls += 1
                mode = input_data["mode"]
                if mode == "ok":
                    return {"calls": self.calls}
                if mode == "unprintable":
                    raise Unprintable()
                if mode == "huge_message":
                    raise ValueError("x" * (10 << 20))
                if mode == "surrogate_message":
                    raise ValueError("caf\udce9")
                if mode == "deep_result":
                    return nested(10000)
                if mode == "deep_context":
                    context["tree"] = nested(10000)
                    return {"ok": True}
                raise AssertionError(mode)

            def management(self, action, data):
                raise Unprintable()
        """;

    private static readonly BundleDirectory Bundle = TestBundles.FromSource(Source);

    private static PolicyInvocation Eval(string key, string mode) => new(
        key,
        new PolicyLoadSpec("mistakes:1.0-test", Bundle, [], []),
        PolicyMethods.Eval,
        new JsonObject { ["parameters"] = new JsonObject(), ["input_data"] = new JsonObject { ["mode"] = mode }, ["context"] = new JsonObject() },
        TimeSpan.FromSeconds(10));

    private async Task<PolicyGridException> FailsAsync(string mode)
    {
        await fixture.Pool.InvokeAsync(Eval(mode, "ok"), Ct); // the instance is warm, so a worker replaced would show
        var error = await Should.ThrowAsync<PolicyGridException>(() => fixture.Pool.InvokeAsync(Eval(mode, mode), Ct));
        error.Status.ShouldBe(422);
        error.Code.ShouldBe("policy_error");
        var after = (await fixture.Pool.InvokeAsync(Eval(mode, "ok"), Ct))!["result"]!.AsObject();
        after["calls"]!.GetValue<int>().ShouldBe(3, "the same worker and instance serve the next call");
        return error;
    }

    [Fact]
    public async Task An_exception_whose_str_raises_is_named_by_its_type()
    {
        var error = await FailsAsync("unprintable");
        error.Message.ShouldStartWith("Unprintable: ");
        error.Message.ShouldContain("str() of the Unprintable raised RuntimeError");
    }

    [Fact]
    public async Task A_huge_exception_message_is_cut_not_reported_as_an_over_long_answer()
    {
        var error = await FailsAsync("huge_message");
        error.Message.ShouldStartWith("ValueError: xxxx");
        error.Message.ShouldContain("more characters)");
        error.Message.Length.ShouldBeLessThan(20_000);
    }

    [Fact]
    public async Task An_exception_message_with_a_lone_surrogate_keeps_its_type_and_text()
    {
        var error = await FailsAsync("surrogate_message");
        error.Message.ShouldBe(@"ValueError: caf\udce9");
    }

    [Theory]
    [InlineData("deep_result")]
    [InlineData("deep_context")]
    public async Task An_answer_or_context_nested_past_the_encoders_recursion_limit_is_a_policy_error(string mode)
    {
        var error = await FailsAsync(mode);
        error.Message.ShouldStartWith("ValueError: the policy answered JSON nested too deep");
    }

    [Theory]
    [InlineData("    def evaluate(self, parameters, input_data, context):\n        return {}\n", "AIOSv1PolicyRule has no eval(parameters, input_data, context) method")]
    [InlineData("    def eval(self, input_data):\n        return {}\n", "AIOSv1PolicyRule.eval(input_data) cannot be called as eval(parameters, input_data, context)")]
    public async Task A_class_whose_eval_cannot_be_called_fails_to_load_naming_it(string methods, string message)
    {
        // Loading is what a push's dry load does: such a policy used to be accepted and then fail every call.
        var bundle = TestBundles.FromSource("class AIOSv1PolicyRule:\n    def __init__(self, rule_id, settings, parameters):\n        pass\n" + methods);
        var error = await Should.ThrowAsync<PolicyLoadException>(() => fixture.Pool.InvokeOnceAsync(
            new PolicyLoadSpec("noeval:1.0-test", bundle, [], []), PolicyMethods.Load, [], TimeSpan.FromSeconds(10), Ct));
        error.Message.ShouldContain(message);
    }

    [Fact]
    public async Task Management_raising_an_exception_whose_str_raises_is_a_policy_error()
    {
        var error = await Should.ThrowAsync<PolicyGridException>(() => fixture.Pool.InvokeOnceAsync(
            new PolicyLoadSpec("mistakes:1.0-test", Bundle, [], []), PolicyMethods.Management,
            new JsonObject { ["action"] = "anything", ["data"] = new JsonObject() }, TimeSpan.FromSeconds(10), Ct));
        error.Status.ShouldBe(422);
        error.Code.ShouldBe("policy_error");
        error.Message.ShouldStartWith("Unprintable: ");
    }
}
