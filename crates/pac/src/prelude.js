// uplink's PAC helper functions, run once in every PAC context before the PAC itself.
//
// The string helpers are JavaScript because browsers define them over JavaScript strings and
// regular expressions (shExpMatch's pattern is turned into a RegExp, so "(a|b)" alternation works
// as it does in Chromium and Firefox). Address, DNS and clock helpers call the native functions in
// `N`, which this script receives and then removes from the global object, so a PAC sees only the
// standard helper names.
(function (g, N) {
  'use strict';
  var define = function (name, fn) {
    Object.defineProperty(g, name, { value: fn, writable: true, configurable: true, enumerable: false });
  };
  var isStr = function (v) { return typeof v === 'string'; };
  var args = function (a) { return Array.prototype.slice.call(a); };
  var tz = function () { return -(new Date()).getTimezoneOffset(); };

  // Argument types follow Chromium (proxy_resolver_v8.cc and its JavaScript helper library): a
  // helper throws a TypeError exactly when Chromium's does — when it would read a property of
  // null or undefined, or call a method the argument does not have — and otherwise answers what
  // Chromium answers for the same values, however odd (e.g. localHostOrDomainIs() is true there).
  // The messages name the helper and the argument instead of V8's generic text.
  var describe = function (v) {
    if (v === null) return 'null';
    if (v === undefined) return 'nothing';
    return 'a ' + typeof v;
  };
  var typeError = function (fn, what, v) {
    return new TypeError(fn + ': ' + what + ' must be a string, got ' + describe(v));
  };
  // `v` must be an object or primitive whose property `prop` can be read.
  var readable = function (fn, what, v) {
    if (v === null || v === undefined) throw typeError(fn, what, v);
  };
  // `v` must have a method `method`.
  var callable = function (fn, what, v, method) {
    readable(fn, what, v);
    if (typeof v[method] !== 'function') throw typeError(fn, what, v);
  };

  define('isPlainHostName', function isPlainHostName(host) {
    if (!isStr(host)) throw new TypeError('Requires 1 string parameter');
    return host.indexOf('.') < 0 && !N.isIpv6(host);
  });
  define('dnsDomainIs', function dnsDomainIs(host, domain) {
    readable('dnsDomainIs', 'host', host);
    readable('dnsDomainIs', 'domain', domain);
    var hostLen = host.length, domainLen = domain.length;
    // Non-strings without a usable length (numbers, booleans) compare false, as in Chromium.
    if (!(hostLen >= domainLen)) return false;
    callable('dnsDomainIs', 'host', host, 'substring');
    return host.substring(hostLen - domainLen) == domain;
  });
  define('localHostOrDomainIs', function localHostOrDomainIs(host, hostdom) {
    // Chromium's rule: equal, or `host` followed by a dot starts `hostdom`. So an unqualified
    // host matches by its first label ("www" / "www.example.com"), and so does a host that is a
    // leading part of hostdom ending at a dot ("www.example" / "www.example.com": true in
    // Chromium, Firefox and pacparser alike, though Netscape's text says "exactly").
    if (host == hostdom) return true;
    callable('localHostOrDomainIs', 'hostdom', hostdom, 'lastIndexOf');
    return hostdom.lastIndexOf(host + '.', 0) == 0;
  });
  define('dnsDomainLevels', function dnsDomainLevels(host) {
    callable('dnsDomainLevels', 'host', host, 'split');
    return host.split('.').length - 1;
  });

  // Compiled patterns, bounded so a PAC building patterns from URLs cannot grow it forever.
  var patterns = new Map();
  define('shExpMatch', function shExpMatch(str, shexp) {
    callable('shExpMatch', 'pattern', shexp, 'replace');
    shexp = String(shexp);
    var re = patterns.get(shexp);
    if (re === undefined) {
      if (patterns.size >= 4096) patterns.clear();
      try {
        re = new RegExp('^' + shexp.replace(/\./g, '\\.').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
      } catch (e) {
        re = null;
      }
      patterns.set(shexp, re);
    }
    // The string is converted as RegExp.prototype.test converts it (null is "null").
    return re !== null && re.test(str);
  });

  define('isInNet', function isInNet(host, pattern, mask) {
    if (!isStr(host) || !isStr(pattern) || !isStr(mask)) return false;
    return N.isInNet(host, pattern, mask);
  });
  define('dnsResolve', function dnsResolve(host) {
    if (!isStr(host)) return null;
    return N.dnsResolve(host) || null;
  });
  define('isResolvable', function isResolvable(host) {
    if (!isStr(host)) return false;
    return !!N.dnsResolve(host);
  });
  define('myIpAddress', function myIpAddress() { return N.myIpAddress(); });

  define('weekdayRange', function weekdayRange() { return N.clock(0, tz(), args(arguments)); });
  define('dateRange', function dateRange() { return N.clock(1, tz(), args(arguments)); });
  define('timeRange', function timeRange() {
    // Chromium throws for a count that is none of its forms (one "GMT" alone included).
    var n = arguments.length;
    if (n > 0) {
      var counted = arguments[n - 1] == 'GMT' ? n - 1 : n;
      if (counted !== 1 && counted !== 2 && counted !== 4 && counted !== 6) {
        throw new TypeError('timeRange: bad number of arguments (' + counted + '); use (hour), ' +
          '(hour1, hour2), (h1, m1, h2, m2) or (h1, m1, s1, h2, m2, s2), optionally with "GMT"');
      }
    }
    return N.clock(2, tz(), args(arguments));
  });
  define('alert', function alert(message) { N.alert(String(message)); });

  // Microsoft's IPv6 extensions. With a non-string argument Chromium's dnsResolveEx returns
  // undefined (not ""), so its isResolvableEx, which compares that with "", answers true: kept, so
  // a PAC routes here as it does in Chromium. Non-ASCII lists are not sorted (null).
  define('dnsResolveEx', function dnsResolveEx(host) {
    if (!isStr(host)) return undefined;
    return N.dnsResolveEx(host);
  });
  define('isResolvableEx', function isResolvableEx(host) {
    if (!isStr(host)) return true;
    return N.dnsResolveEx(host) !== '';
  });
  define('myIpAddressEx', function myIpAddressEx() { return N.myIpAddressEx(); });
  define('isInNetEx', function isInNetEx(ip, prefix) {
    if (arguments.length < 2 || !isStr(ip) || !isStr(prefix)) return null;
    return N.isInNetEx(ip, prefix);
  });
  define('sortIpAddressList', function sortIpAddressList(list) {
    if (!isStr(list) || /[^\x00-\x7f]/.test(list)) return null;
    return N.sortIpAddressList(list);
  });
  define('getClientVersion', function getClientVersion() { return '1.0'; });
})(globalThis, globalThis.__uplink_native);
delete globalThis.__uplink_native;
