global using Xunit;

[assembly: AssemblyFixture(typeof(PolicyGrid.Runtime.Tests.TestFilesCleanup))]
