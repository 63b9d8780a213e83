using System.Text;
using PolicyGrid.Core.Documents;
using Shouldly;

namespace PolicyGrid.Core.Tests;

public class TimestampsTests
{
    [Fact]
    public void The_utf8_format_is_the_string_format_byte_for_byte()
    {
        var random = new Random(7);
        var instants = new List<DateTimeOffset>
        {
            DateTimeOffset.MinValue, DateTimeOffset.MaxValue, DateTimeOffset.UnixEpoch,
            new(2026, 11, 26, 1, 2, 3, 456, TimeSpan.FromHours(2)), new(999, 12, 31, 23, 59, 59, 999, TimeSpan.FromHours(-5)),
        };
        instants.AddRange(Enumerable.Range(0, 1000).Select(_ => new DateTimeOffset(random.NextInt64(DateTimeOffset.MaxValue.UtcTicks), TimeSpan.Zero)));
        Span<byte> utf8 = stackalloc byte[Timestamps.Length];
        foreach (var instant in instants)
        {
            Timestamps.FormatUtf8(instant, utf8);
            Encoding.UTF8.GetString(utf8).ShouldBe(Timestamps.Format(instant));
        }
    }
}
