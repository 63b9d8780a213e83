using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using PolicyGrid.Runtime.Execution;
using Shouldly;

namespace PolicyGrid.Runtime.Tests;

public sealed class CanonicalJsonTests
{
    private static string Hex(string json) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(json)));

    [Fact]
    public void Keys_are_sorted_at_every_depth_and_arrays_keep_their_order()
    {
        var value = JsonNode.Parse("""{"b":1,"a":{"z":[3,{"y":1,"x":2}],"c":null},"\u00e9":"e","A":true}""");
        CanonicalJson.Sha256(value).ShouldBe(Hex("""[{"A":true,"a":{"c":null,"z":[3,{"x":2,"y":1}]},"b":1,"\u00E9":"e"}]"""));
    }

    [Fact]
    public void The_same_value_hashes_alike_whatever_order_its_keys_came_in_and_different_values_do_not()
    {
        var one = JsonNode.Parse("""{"ip":"10.0.0.1","port":443,"tags":["a","b"]}""");
        var other = JsonNode.Parse("""{"tags":["a","b"],"port":443,"ip":"10.0.0.1"}""");
        CanonicalJson.Sha256(one).ShouldBe(CanonicalJson.Sha256(other));
        CanonicalJson.Sha256(JsonNode.Parse("""{"tags":["b","a"],"port":443,"ip":"10.0.0.1"}""")).ShouldNotBe(CanonicalJson.Sha256(one));
        CanonicalJson.Sha256(one, null).ShouldNotBe(CanonicalJson.Sha256(one));
    }

    [Fact]
    public void A_large_value_between_small_ones_leaves_no_trace_in_the_next_hash()
    {
        var small = new JsonObject { ["k"] = "v" };
        var expected = CanonicalJson.Sha256(small);
        var large = new JsonObject { ["blob"] = new string('x', 200_000) };
        CanonicalJson.Sha256(large).ShouldBe(Hex($$"""[{"blob":"{{new string('x', 200_000)}}"}]"""));
        CanonicalJson.Sha256(small).ShouldBe(expected);
        expected.ShouldBe(Hex("""[{"k":"v"}]"""));
    }

    [Fact]
    public void Hashing_from_many_threads_at_once_gives_each_its_own_answer()
    {
        var results = Enumerable.Range(0, 64).AsParallel().Select(i => (i, CanonicalJson.Sha256(new JsonObject { ["n"] = i, ["a"] = "x" }))).ToList();
        foreach (var (i, hash) in results) hash.ShouldBe(Hex($$"""[{"a":"x","n":{{i}}}]"""));
    }
}
