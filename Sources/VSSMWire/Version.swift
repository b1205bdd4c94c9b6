/// The project's one version string. `vssm --version`, the module's `CK_INFO.libraryVersion`
/// (major.minor) and the Debian packages (`make deb` reads the line below) all take it from here.
public enum VSSMVersion {
    public static let string = "3.0.0"

    /// The first two numbers, for `CK_VERSION` (0 where a part is not a number below 256).
    public static var majorMinor: (major: UInt8, minor: UInt8) {
        let parts = string.split(separator: ".").prefix(2).map { UInt8($0) ?? 0 }
        return (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
    }
}
