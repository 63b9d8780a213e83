namespace PolicyGrid.Core.Querying;

/// <summary>
/// Orders version strings the way people read them: "1.10" &gt; "1.9", "1.0" &lt; "1.0.1",
/// numeric parts compare as numbers, other parts as text, and a pre-release suffix
/// ("1.0-rc1") sorts before the release ("1.0").
/// </summary>
public sealed class VersionComparer : IComparer<string>
{
    public static readonly VersionComparer Instance = new();

    /// <summary>Fields compared as versions in filters and sorts.</summary>
    public static bool IsVersionField(string path) =>
        path is "version" or "graph_version" || path.EndsWith(".version", StringComparison.Ordinal);

    public int Compare(string? x, string? y)
    {
        if (ReferenceEquals(x, y)) return 0;
        if (x is null) return -1;
        if (y is null) return 1;
        var (xMain, xPre) = SplitPre(x);
        var (yMain, yPre) = SplitPre(y);
        var c = CompareDotted(xMain, yMain);
        if (c != 0) return c;
        if (xPre is null) return yPre is null ? 0 : 1;
        if (yPre is null) return -1;
        return CompareDotted(xPre, yPre);
    }

    private static (string Main, string? Pre) SplitPre(string v)
    {
        var dash = v.IndexOf('-', StringComparison.Ordinal);
        return dash < 0 ? (v, null) : (v[..dash], v[(dash + 1)..]);
    }

    private static int CompareDotted(string a, string b)
    {
        var pa = a.Split('.');
        var pb = b.Split('.');
        for (var i = 0; i < Math.Max(pa.Length, pb.Length); i++)
        {
            if (i >= pa.Length) return -1;
            if (i >= pb.Length) return 1;
            var c = ComparePart(pa[i], pb[i]);
            if (c != 0) return c;
        }
        return 0;
    }

    /// <summary>
    /// Natural order within one part: runs of digits compare as numbers (of any length), other
    /// runs as text, digits before text, so "rc10" &gt; "rc9" and "9" &lt; "a".
    /// </summary>
    private static int ComparePart(string a, string b)
    {
        int i = 0, j = 0;
        while (i < a.Length && j < b.Length)
        {
            var ad = char.IsAsciiDigit(a[i]);
            var bd = char.IsAsciiDigit(b[j]);
            if (ad != bd) return ad ? -1 : 1;
            var ie = Run(a, i, ad);
            var je = Run(b, j, bd);
            var c = ad ? CompareDigits(a[i..ie], b[j..je]) : string.CompareOrdinal(a[i..ie], b[j..je]);
            if (c != 0) return c;
            i = ie;
            j = je;
        }
        return (a.Length - i).CompareTo(b.Length - j);
    }

    private static int Run(string s, int start, bool digits)
    {
        var end = start;
        while (end < s.Length && char.IsAsciiDigit(s[end]) == digits) end++;
        return end;
    }

    private static int CompareDigits(string x, string y)
    {
        x = x.TrimStart('0');
        y = y.TrimStart('0');
        return x.Length != y.Length ? x.Length.CompareTo(y.Length) : string.CompareOrdinal(x, y);
    }
}
