global using Xunit;

// These tests exercise Linux file modes, fsync and process signals.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
