using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;

namespace PolicyGrid.Core.Tests;

public class PolicyUriTests
{
    [Theory]
    [InlineData("ip_allowlist:1.0-beta", "ip_allowlist", "1.0", "beta")]
    [InlineData("ip_allowlist:1.0.0-rc1-stable", "ip_allowlist", "1.0.0-rc1", "stable")]
    [InlineData("a:1-b", "a", "1", "b")]
    [InlineData("ip-allowlist:1.0-beta", "ip-allowlist", "1.0", "beta")]
    [InlineData("scorer:2024.01.05-prod", "scorer", "2024.01.05", "prod")]
    public void Parse_splits_at_first_colon_then_last_dash(string text, string name, string version, string tag)
    {
        var uri = PolicyUri.Parse(text);
        uri.ShouldBe(new PolicyUri(name, version, tag));
        uri.ToString().ShouldBe(text);
    }

    [Fact]
    public void Format_joins_the_parts() =>
        new PolicyUri("ip_allowlist", "1.0.0-rc1", "beta").ToString().ShouldBe("ip_allowlist:1.0.0-rc1-beta");

    [Theory]
    [InlineData("", "is empty")]
    [InlineData("ip_allowlist", "has no ':'")]
    [InlineData("ip_allowlist:1.0", "has no '-'")]
    [InlineData(":1.0-beta", "name")]
    [InlineData("ip:-beta", "version")]
    [InlineData("ip:1.0-", "release_tag")]
    [InlineData("ip allow:1.0-beta", "whitespace")]
    [InlineData("ip:1.0-be ta", "whitespace")]
    [InlineData("ip/x:1.0-beta", "'/'")]
    [InlineData("ip:1.0/2-beta", "'/'")]
    [InlineData("ip:1:0-beta", "':'")]
    [InlineData("ip:1.0-be:ta", "'be:ta' must not contain ':'")]
    [InlineData("ip:1.0-\tbeta", "whitespace")]
    public void Rejects_malformed_uris_saying_why(string text, string expected)
    {
        PolicyUri.TryParse(text, out var uri, out var error).ShouldBeFalse();
        uri.ShouldBeNull();
        error.ShouldContain(expected);
    }

    [Fact]
    public void Parse_failure_is_a_400_naming_the_field()
    {
        var e = Should.Throw<PolicyGridException>(() => PolicyUri.Parse("nope", "graph_uri"));
        e.Status.ShouldBe(400);
        e.Code.ShouldBe(ErrorCodes.ValidationFailed);
        e.Errors.Single().Path.ShouldBe("graph_uri");
    }

    [Fact]
    public void Check_names_each_bad_part()
    {
        var errors = new PolicyUri("a:b", "1 0", "x:y").Check();
        errors.Select(e => e.Path).Distinct().ShouldBe(["name", "version", "release_tag"]);
    }

    [Fact]
    public void Release_tag_may_not_hold_a_dash_but_version_may()
    {
        new PolicyUri("a", "1.0-rc1", "beta").Check().ShouldBeEmpty();
        new PolicyUri("a", "1.0", "be-ta").Check().Single().Path.ShouldBe("release_tag");
    }

    [Fact]
    public void Check_uses_the_given_field_names()
    {
        new PolicyUri("", "1", "b").Check("graph_name", "graph_version", "graph_release_tag").Single().Path.ShouldBe("graph_name");
    }
}
