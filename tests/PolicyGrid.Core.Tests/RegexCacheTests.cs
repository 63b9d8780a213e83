using System.Text.RegularExpressions;
using PolicyGrid.Core.Querying;
using Shouldly;

namespace PolicyGrid.Core.Tests;

public sealed class RegexCacheTests
{
    [Fact]
    public void A_stream_of_distinct_patterns_never_grows_the_cache_past_its_capacity()
    {
        var cache = new RegexCache(50, TimeSpan.FromMilliseconds(100));
        for (var i = 0; i < 1000; i++)
        {
            cache.Get($"^user-{i}$", RegexOptions.CultureInvariant).IsMatch($"user-{i}").ShouldBeTrue();
            cache.Count.ShouldBeLessThanOrEqualTo(50);
        }
    }

    [Fact]
    public void The_same_pattern_and_options_give_the_same_compiled_regex_and_other_options_another()
    {
        var cache = new RegexCache(10, TimeSpan.FromMilliseconds(100));
        var first = cache.Get("abc", RegexOptions.None);
        cache.Get("abc", RegexOptions.None).ShouldBeSameAs(first);
        var ignoringCase = cache.Get("abc", RegexOptions.IgnoreCase);
        ignoringCase.ShouldNotBeSameAs(first);
        ignoringCase.IsMatch("ABC").ShouldBeTrue();
        first.MatchTimeout.ShouldBe(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void A_pattern_that_does_not_parse_is_refused_and_not_cached()
    {
        var cache = new RegexCache(10, TimeSpan.FromMilliseconds(100));
        Should.Throw<ArgumentException>(() => cache.Get("(unclosed", RegexOptions.None));
        cache.Count.ShouldBe(0);
    }

    [Fact]
    public void Template_and_query_patterns_from_callers_stay_bounded()
    {
        for (var i = 0; i < 1500; i++)
        {
            Templates.TemplateValidator.Compile($"^t{i}-[a-z]+$");
            FieldMatcher.Compile($"^q{i}", i % 2 == 0 ? "i" : "");
        }
        Templates.TemplateValidator.Patterns.Count.ShouldBeLessThanOrEqualTo(1000);
        FieldMatcher.Patterns.Count.ShouldBeLessThanOrEqualTo(1000);
    }
}
