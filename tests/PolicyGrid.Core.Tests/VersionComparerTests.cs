using PolicyGrid.Core.Querying;

namespace PolicyGrid.Core.Tests;

public class VersionComparerTests
{
    [Theory]
    [InlineData("1.10", "1.9")]
    [InlineData("2.0", "1.99.99")]
    [InlineData("1.0.1", "1.0")]
    [InlineData("1.0", "1.0-rc1")]
    [InlineData("1.0.0", "1.0.0-rc2")]
    [InlineData("1.0-rc10", "1.0-rc9")]
    [InlineData("1.0-rc.10", "1.0-rc.9")]
    [InlineData("1.0-beta", "1.0-alpha")]
    [InlineData("10", "9")]
    [InlineData("1.a", "1.9")]
    public void Orders_versions_as_people_read_them(string higher, string lower)
    {
        VersionComparer.Instance.Compare(higher, lower).ShouldBeGreaterThan(0);
        VersionComparer.Instance.Compare(lower, higher).ShouldBeLessThan(0);
    }

    [Theory]
    [InlineData("1.0", "1.0")]
    [InlineData("1.0-rc1", "1.0-rc1")]
    [InlineData("01.2", "1.2")]
    public void Equal_versions_compare_equal(string a, string b) => VersionComparer.Instance.Compare(a, b).ShouldBe(0);

    [Fact]
    public void Sorting_a_list_puts_releases_after_their_prereleases()
    {
        string[] versions = ["1.10", "1.0", "1.9", "1.0-rc1", "2.0-beta", "1.0.1"];
        versions.Order(VersionComparer.Instance).ShouldBe(["1.0-rc1", "1.0", "1.0.1", "1.9", "1.10", "2.0-beta"]);
    }

    [Fact]
    public void Null_sorts_first()
    {
        VersionComparer.Instance.Compare(null, "1").ShouldBeLessThan(0);
        VersionComparer.Instance.Compare("1", null).ShouldBeGreaterThan(0);
    }

    [Theory]
    [InlineData("version", true)]
    [InlineData("graph_version", true)]
    [InlineData("function_policy_data.version", true)]
    [InlineData("name", false)]
    [InlineData("versions", false)]
    public void Knows_which_fields_are_versions(string path, bool expected) => VersionComparer.IsVersionField(path).ShouldBe(expected);
}
