using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Shouldly;
using Xunit;

namespace PolicyGrid.Kubernetes.Tests;

/// <summary>Settings that would fail every job only once it ran are refused when the node starts, each named.</summary>
public class KubernetesJobOptionsTests
{
    private static KubernetesJobOptions Resolve(Dictionary<string, string?> settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        using var services = new ServiceCollection().AddKubernetesJobLauncher(configuration).BuildServiceProvider();
        return services.GetRequiredService<IOptions<KubernetesJobOptions>>().Value;
    }

    [Fact]
    public void A_node_with_its_result_url_starts()
    {
        Resolve(new() { ["PolicyGrid:Jobs:Kubernetes:ResultCallbackUrl"] = "http://policy-executor" }).ResultCallbackUrl.ShouldBe("http://policy-executor");
    }

    [Fact]
    public void Settings_no_job_could_run_with_are_refused_naming_each()
    {
        // Without a result URL the runner had nowhere to post: every job ran its policy and then failed. uid 0 kept every
        // pod from starting (runAsNonRoot), each job ending timed out at its deadline; a negative TTL was refused per Job.
        var error = Should.Throw<OptionsValidationException>(() => Resolve(new()
        {
            ["PolicyGrid:Jobs:Kubernetes:RunnerImage"] = " ",
            ["PolicyGrid:Jobs:Kubernetes:RunAsUser"] = "0",
            ["PolicyGrid:Jobs:Kubernetes:TtlSecondsAfterFinished"] = "-1",
            ["PolicyGrid:Jobs:Kubernetes:StartupAllowanceSeconds"] = "-5",
            ["PolicyGrid:Jobs:Kubernetes:StartFailureGrace"] = "-00:00:01",
            ["PolicyGrid:Jobs:Kubernetes:PollInitial"] = "00:00:00",
        }));
        error.Failures.ShouldContain(f => f.StartsWith("PolicyGrid:Jobs:Kubernetes:RunnerImage is empty", StringComparison.Ordinal));
        error.Failures.ShouldContain(f => f.StartsWith("PolicyGrid:Jobs:Kubernetes:ResultCallbackUrl is empty; it must be this node's http(s) URL", StringComparison.Ordinal));
        error.Failures.ShouldContain("PolicyGrid:Jobs:Kubernetes:RunAsUser is 0; it must be a uid greater than 0 (job pods run as non-root)");
        error.Failures.ShouldContain("PolicyGrid:Jobs:Kubernetes:TtlSecondsAfterFinished is -1; it must be 0 or more");
        error.Failures.ShouldContain("PolicyGrid:Jobs:Kubernetes:StartupAllowanceSeconds is -5; it must be 0 or more");
        error.Failures.ShouldContain("PolicyGrid:Jobs:Kubernetes:StartFailureGrace is -00:00:01; it must be 0 or more");
        error.Failures.ShouldContain("PolicyGrid:Jobs:Kubernetes:PollInitial is 00:00:00; it must be greater than zero");
    }

    [Fact]
    public void A_result_url_that_is_not_an_absolute_http_url_is_refused()
    {
        var error = Should.Throw<OptionsValidationException>(() => Resolve(new() { ["PolicyGrid:Jobs:Kubernetes:ResultCallbackUrl"] = "policy-executor:80" }));
        error.Failures.ShouldHaveSingleItem().ShouldStartWith("PolicyGrid:Jobs:Kubernetes:ResultCallbackUrl is 'policy-executor:80'");
    }
}
