//! Which Apache directives ward acts on, which it knows and ignores, and which sections exist.
//!
//! A word that is no Apache directive at all is an error, as in Apache: a typo such as
//! `SSLProtcol` must not silently leave old protocols enabled.

pub(super) enum DirectiveKind {
    /// `SSLProtocol`, `SSLCipherSuite`, ... : decides the listener's TLS.
    Tls,
    /// `Listen`: read so configtest can compare it with `ward.toml`.
    Listen,
    /// A real Apache directive that ward does not use.
    KnownApache,
    /// Not an Apache directive.
    Unknown,
}

pub(super) enum SectionKind {
    VirtualHost,
    /// `<IfModule>`, `<IfDefine>`, ...: ward reads the contents as if the condition held.
    Conditional,
    /// `<Directory>`, `<Location>`, ...: nothing inside concerns a listener's TLS.
    Other,
}

#[rustfmt::skip]
const TLS: &[&str] = &[
    "SSLProtocol",
    "SSLCipherSuite",
    "SSLHonorCipherOrder",
    "SSLCertificateFile",
    "SSLCertificateKeyFile",
    "SSLSessionTickets",
    "SSLSessionCache",
    "SSLOpenSSLConfCmd",
];

/// Directives of Apache httpd 2.4's core and common modules, so that a real `ssl.conf` can be
/// dropped in. Matched case-insensitively, as Apache does.
#[rustfmt::skip]
const KNOWN_APACHE: &[&str] = &[
    // mod_ssl
    "SSLEngine", "SSLCertificateChainFile", "SSLCACertificateFile", "SSLCACertificatePath",
    "SSLCADNRequestFile", "SSLCADNRequestPath", "SSLCARevocationFile", "SSLCARevocationPath",
    "SSLCARevocationCheck", "SSLVerifyClient", "SSLVerifyDepth", "SSLOptions", "SSLRequire",
    "SSLRequireSSL", "SSLSessionCacheTimeout",
    "SSLSessionTicketKeyFile", "SSLRandomSeed", "SSLPassPhraseDialog", "SSLMutex",
    "SSLCompression", "SSLInsecureRenegotiation", "SSLUseStapling", "SSLStaplingCache",
    "SSLStaplingResponderTimeout", "SSLStaplingReturnResponderErrors", "SSLStaplingStandardCacheTimeout",
    "SSLStaplingErrorCacheTimeout", "SSLStaplingFakeTryLater", "SSLStaplingForceURL",
    "SSLStrictSNIVHostCheck", "SSLCryptoDevice", "SSLFIPS",
    "SSLUserName", "SSLRenegBufferSize", "SSLSRPVerifierFile", "SSLSRPUnknownUserSeed",
    "SSLOCSPEnable", "SSLOCSPDefaultResponder", "SSLOCSPOverrideResponder",
    "SSLOCSPResponderTimeout", "SSLOCSPResponseMaxAge", "SSLOCSPResponseTimeSkew",
    "SSLOCSPUseRequestNonce", "SSLOCSPNoverify", "SSLOCSPProxyURL", "SSLProxyEngine",
    "SSLProxyProtocol", "SSLProxyCipherSuite", "SSLProxyVerify", "SSLProxyVerifyDepth",
    "SSLProxyCACertificateFile", "SSLProxyCACertificatePath", "SSLProxyCARevocationFile",
    "SSLProxyCARevocationPath", "SSLProxyCARevocationCheck", "SSLProxyMachineCertificateFile",
    "SSLProxyMachineCertificatePath", "SSLProxyMachineCertificateChainFile",
    "SSLProxyCheckPeerCN", "SSLProxyCheckPeerName", "SSLProxyCheckPeerExpire",
    "SSLVHostSNIPolicy", "SSLPolicy",
    // core
    "AcceptFilter", "AcceptPathInfo", "AccessFileName", "AddDefaultCharset", "AllowEncodedSlashes",
    "AllowOverride", "AllowOverrideList", "ContentDigest", "DefaultRuntimeDir", "DefaultType",
    "Define", "DocumentRoot", "EnableMMAP", "EnableSendfile", "Error", "ErrorDocument",
    "ErrorLog", "ErrorLogFormat", "ExtendedStatus", "FileETag", "HostnameLookups",
    "HttpProtocolOptions", "Include", "IncludeOptional", "KeepAlive", "KeepAliveTimeout",
    "LimitInternalRecursion", "LimitRequestBody", "LimitRequestFields", "LimitRequestFieldSize",
    "LimitRequestLine", "LimitXMLRequestBody", "LogLevel", "MaxKeepAliveRequests",
    "MaxRangeOverlaps", "MaxRangeReversals", "MaxRanges", "MergeTrailers", "Mutex",
    "NameVirtualHost", "Options", "Protocol", "Protocols", "ProtocolsHonorOrder", "QualifyRedirectURL",
    "RLimitCPU", "RLimitMEM", "RLimitNPROC", "ServerAdmin", "ServerAlias", "ServerName",
    "ServerPath", "ServerRoot", "ServerSignature", "ServerTokens", "SetHandler",
    "SetInputFilter", "SetOutputFilter", "TimeOut", "TraceEnable", "UnDefine", "UseCanonicalName",
    "UseCanonicalPhysicalPort", "PidFile", "User", "Group", "ListenBackLog", "ListenCoresBucketsRatio",
    "SendBufferSize", "ReceiveBufferSize", "MaxRequestWorkers", "MaxClients", "MaxConnectionsPerChild",
    "MaxRequestsPerChild", "MaxSpareThreads", "MinSpareThreads", "MaxSpareServers",
    "MinSpareServers", "StartServers", "ServerLimit", "ThreadLimit", "ThreadsPerChild",
    "ThreadStackSize", "AsyncRequestWorkerFactor", "GracefulShutdownTimeout", "CoreDumpDirectory",
    "ScoreBoardFile", "MaxMemFree", "Win32DisableAcceptEx", "LoadModule", "LoadFile",
    // logging, mime, headers, rewrite, proxy, aliases, access, env, deflate, reqtimeout
    "CustomLog", "TransferLog", "LogFormat", "BufferedLogs", "GlobalLog", "ForensicLog",
    "AddType", "AddCharset", "AddEncoding", "AddHandler", "AddLanguage", "AddOutputFilter",
    "AddOutputFilterByType", "DefaultLanguage", "TypesConfig", "RemoveHandler", "RemoveType",
    "MimeMagicFile", "Header", "RequestHeader", "RewriteEngine", "RewriteRule", "RewriteCond",
    "RewriteBase", "RewriteMap", "RewriteOptions", "ProxyPass", "ProxyPassReverse",
    "ProxyPassMatch", "ProxyPreserveHost", "ProxyRequests", "ProxyTimeout", "ProxyVia",
    "ProxyErrorOverride", "ProxyAddHeaders", "ProxyPassReverseCookieDomain",
    "ProxyPassReverseCookiePath", "Alias", "AliasMatch", "Redirect", "RedirectMatch",
    "RedirectPermanent", "RedirectTemp", "ScriptAlias", "ScriptAliasMatch", "Require",
    "Order", "Allow", "Deny", "Satisfy", "AuthType", "AuthName", "AuthUserFile",
    "AuthGroupFile", "AuthBasicProvider", "SetEnv", "SetEnvIf", "SetEnvIfNoCase", "UnsetEnv",
    "PassEnv", "BrowserMatch", "BrowserMatchNoCase", "DirectoryIndex", "DirectorySlash",
    "IndexOptions", "IndexIgnore", "AddIcon", "AddIconByType", "AddIconByEncoding",
    "DefaultIcon", "ReadmeName", "HeaderName", "AddDescription", "DeflateCompressionLevel",
    "RequestReadTimeout", "ExpiresActive", "ExpiresByType", "ExpiresDefault", "Timeout",
    "H2Direct", "H2ModernTLSOnly", "H2Push", "SecRuleEngine", "JkMount", "JkWorkersFile",
    "JkLogFile", "JkLogLevel", "JkShmFile", "JkMountFile", "JkOptions", "WSGIScriptAlias",
    "FilterDeclare", "FilterProvider", "FilterChain", "CGIPassAuth", "Action", "Script",
];

#[rustfmt::skip]
const CONDITIONAL_SECTIONS: &[&str] = &[
    "IfModule", "IfDefine", "IfVersion", "IfFile", "IfDirective", "IfSection", "If",
    "ElseIf", "Else",
];

#[rustfmt::skip]
const OTHER_SECTIONS: &[&str] = &[
    "Directory", "DirectoryMatch", "Files", "FilesMatch", "Location", "LocationMatch",
    "Proxy", "ProxyMatch", "Limit", "LimitExcept", "Macro", "RequireAll", "RequireAny",
    "RequireNone", "AuthnProviderAlias", "AuthzProviderAlias",
];

fn listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|known| known.eq_ignore_ascii_case(name))
}

pub(super) fn directive_kind(name: &str) -> DirectiveKind {
    if listed(TLS, name) {
        DirectiveKind::Tls
    } else if name.eq_ignore_ascii_case("Listen") {
        DirectiveKind::Listen
    } else if listed(KNOWN_APACHE, name) {
        DirectiveKind::KnownApache
    } else {
        DirectiveKind::Unknown
    }
}

pub(super) fn section_kind(name: &str) -> Option<SectionKind> {
    if name.eq_ignore_ascii_case("VirtualHost") {
        Some(SectionKind::VirtualHost)
    } else if listed(CONDITIONAL_SECTIONS, name) {
        Some(SectionKind::Conditional)
    } else if listed(OTHER_SECTIONS, name) {
        Some(SectionKind::Other)
    } else {
        None
    }
}
