using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Identity;

namespace PolicyGrid.Core.Tests;

public class IdentifiersTests
{
    private static List<FieldError> Check(string value)
    {
        var errors = new List<FieldError>();
        Identifiers.Check(errors, "name", value);
        return errors;
    }

    [Theory]
    [InlineData("ip_allowlist")]
    [InlineData("a.b-c_d~e!@$&'()*+,;=:")]
    [InlineData("ünïcode")]
    [InlineData(".hidden")]
    [InlineData("a..b")]
    [InlineData("1.0.")]
    public void Ordinary_names_pass(string value) => Check(value).ShouldBeEmpty();

    [Theory]
    [InlineData("a\u0000b", "control characters")]
    [InlineData("a\u0007b", "control characters")]
    [InlineData("pc%41x", "'%'")]
    [InlineData("a b", "whitespace")]
    [InlineData("a/b", "'/'")]
    [InlineData(".", "made only of dots")]
    [InlineData("..", "made only of dots")]
    [InlineData("...", "made only of dots")]
    public void What_cannot_be_addressed_in_a_path_is_refused_naming_the_rule(string value, string rule) =>
        Check(value).ShouldHaveSingleItem().Message.ShouldContain(rule);

    [Fact]
    public void A_name_over_the_maximum_length_is_refused_without_echoing_it()
    {
        var error = Check(new string('x', Identifiers.MaxLength + 1)).ShouldHaveSingleItem();
        error.Message.ShouldBe($"is {Identifiers.MaxLength + 1} characters long; at most {Identifiers.MaxLength}");
        Check(new string('x', Identifiers.MaxLength)).ShouldBeEmpty();
    }

    [Fact]
    public void Policy_uris_follow_the_same_rules_in_each_part()
    {
        new PolicyUri("a\u0000", "1.0", "beta").Check().ShouldHaveSingleItem().Path.ShouldBe("name");
        new PolicyUri("a", "1%2e0", "beta").Check().ShouldHaveSingleItem().Path.ShouldBe("version");
        new PolicyUri("a", "1.0", new string('t', 300)).Check().ShouldHaveSingleItem().Path.ShouldBe("release_tag");
        new PolicyUri("..", "1.0", "beta").Check().ShouldHaveSingleItem().Path.ShouldBe("name");
        new PolicyUri("a", ".", "beta").Check().ShouldHaveSingleItem().Path.ShouldBe("version");
        new PolicyUri("a", "1.0", "..").Check().ShouldHaveSingleItem().Path.ShouldBe("release_tag");
    }
}
