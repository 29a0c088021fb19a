// The page's words in Chinese (the default) and English. Rules bring their own summaries in
// both languages (annotations summary_zh / summary_en).

const LANG_KEY = "citywatch.lang";

const WORDS = {
  "zh-CN": {
    title: "市场监管物联网指挥中心",
    connected: "实时连接",
    disconnected: "连接中断，正在重连…",
    sound_on: "声音提示：开",
    sound_off: "声音提示：关",
    login: "令牌",
    logout: "退出",
    token_prompt: "请输入访问令牌（citywatch token create 生成）",
    anonymous: "未登录（只读）",
    elevators: "电梯",
    markets: "智慧农贸",
    cameras: "明厨亮灶",
    complaints: "投诉举报",
    alerts: "告警",
    online: "在线",
    offline: "离线",
    in_fault: "故障",
    trapped: "困人",
    turnover_hour: "近1小时交易额",
    sales_hour: "近1小时交易笔数",
    tests_today: "今日农残检测",
    failed_tests: "今日检测不合格",
    on_hold: "暂停销售摊位",
    coverage: "在线率",
    received_today: "今日受理",
    duplicates_today: "今日重复",
    group_risk: "群体投诉风险",
    near_deadline: "临近时限",
    open: "未办结",
    on_time_rate: "按时办结率",
    overdue: "超时未办",
    firing: "告警中",
    unacknowledged: "未确认",
    resolved: "已恢复",
    all: "全部",
    domain: "领域",
    severity: "级别",
    district: "辖区",
    unit: "维保单位",
    state: "状态",
    area: "区域",
    device: "设备",
    clear_filters: "清除筛选",
    no_alerts: "当前没有告警",
    critical: "紧急",
    major: "重要",
    minor: "一般",
    info: "提示",
    elevator: "电梯",
    market: "农贸",
    kitchen: "后厨",
    complaint: "投诉",
    age: "持续",
    acknowledged: "已确认",
    ack: "确认",
    assign: "指派",
    comment: "备注",
    resolve: "关闭",
    false_positive: "误报",
    silence: "静默2小时",
    responded: "已响应",
    on_site: "已到场",
    done: "已完成",
    false_alarm: "误报警",
    field_state: "现场状态",
    labels: "标签",
    value: "触发值",
    since: "开始时间",
    late: "迟报",
    late_by: "迟报时长",
    late_title: "终端补传的数据中发现：开始时间为实际发生时间",
    history: "处置记录",
    notifications: "通知",
    escalations: "升级",
    escalation_step: "升级步骤",
    evidence: "证据",
    close: "关闭窗口",
    map: "辖区地图",
    rules: "规则",
    silences: "静默",
    enabled: "启用",
    disabled: "停用",
    validate: "校验规则文件",
    edit: "修改",
    edit_rule: "修改规则（先校验，再生效）",
    apply: "校验并生效",
    applied: "已生效",
    version: "版本",
    one_rule: "一次只能修改一条规则",
    valid: "规则有效",
    invalid: "规则有误",
    expire: "解除",
    matchers: "匹配条件",
    ends: "结束",
    reason: "原因",
    author: "操作人",
    assign_to: "指派给…",
    comment_text: "备注内容…",
    done_ok: "已提交",
    need_token: "该操作需要令牌",
    delivered: "已送达",
    pending: "待发送",
    failed: "失败",
    held: "暂缓",
    dropped: "已丢弃",
    receiver: "接收方",
    attempts: "尝试",
    event: "事件",
    at: "时间",
    suppressed: "已抑制",
    assignee: "负责人",
    none: "无",
    language: "English",
    mute: "静音",
    unit_view: "维保单位视图",
    rules_readonly: "修改规则需要管理员令牌",
    elevators_legend: "● 电梯",
    kitchens_legend: "■ 后厨",
    markets_legend: "◆ 农贸市场",
  },
  en: {
    title: "Market supervision control room",
    connected: "Live",
    disconnected: "Disconnected, reconnecting…",
    sound_on: "Sound: on",
    sound_off: "Sound: off",
    login: "Token",
    logout: "Sign out",
    token_prompt: "Access token (from citywatch token create)",
    anonymous: "No token (read only)",
    elevators: "Elevators",
    markets: "Smart markets",
    cameras: "Bright kitchens",
    complaints: "Complaints",
    alerts: "Alerts",
    online: "online",
    offline: "offline",
    in_fault: "in fault",
    trapped: "trapped",
    turnover_hour: "turnover, last hour",
    sales_hour: "sales, last hour",
    tests_today: "residue tests today",
    failed_tests: "failed tests today",
    on_hold: "stalls on hold",
    coverage: "online share",
    received_today: "received today",
    duplicates_today: "duplicates today",
    group_risk: "group-complaint risks",
    near_deadline: "near deadline",
    open: "open",
    on_time_rate: "on-time rate",
    overdue: "overdue",
    firing: "firing",
    unacknowledged: "unacknowledged",
    resolved: "resolved",
    all: "all",
    domain: "Domain",
    severity: "Severity",
    district: "District",
    unit: "Unit",
    state: "State",
    area: "Area",
    device: "Device",
    clear_filters: "Clear filters",
    no_alerts: "No alerts",
    critical: "critical",
    major: "major",
    minor: "minor",
    info: "info",
    elevator: "elevator",
    market: "market",
    kitchen: "kitchen",
    complaint: "complaint",
    age: "age",
    acknowledged: "acknowledged",
    ack: "Acknowledge",
    assign: "Assign",
    comment: "Comment",
    resolve: "Resolve",
    false_positive: "False positive",
    silence: "Silence 2 h",
    responded: "Responded",
    on_site: "On site",
    done: "Done",
    false_alarm: "False alarm",
    field_state: "Field state",
    labels: "Labels",
    value: "Value",
    since: "Since",
    late: "late",
    late_by: "Known late by",
    late_title: "Found in data the device delivered late: since is when it happened",
    history: "History",
    notifications: "Notifications",
    escalations: "Escalations",
    escalation_step: "Escalation step",
    evidence: "Evidence",
    close: "Close",
    map: "District map",
    rules: "Rules",
    silences: "Silences",
    enabled: "enabled",
    disabled: "disabled",
    validate: "Validate a rule file",
    edit: "Edit",
    edit_rule: "Edit a rule (validated before it is applied)",
    apply: "Validate and apply",
    applied: "Applied",
    version: "version",
    one_rule: "Change one rule at a time",
    valid: "Valid",
    invalid: "Invalid",
    expire: "Expire",
    matchers: "Matchers",
    ends: "Ends",
    reason: "Reason",
    author: "Author",
    assign_to: "Assign to…",
    comment_text: "Comment…",
    done_ok: "Done",
    need_token: "This needs a token",
    delivered: "delivered",
    pending: "pending",
    failed: "failed",
    held: "held",
    dropped: "dropped",
    receiver: "Receiver",
    attempts: "Attempts",
    event: "Event",
    at: "At",
    suppressed: "suppressed",
    assignee: "Assignee",
    none: "none",
    language: "中文",
    mute: "Mute",
    unit_view: "Maintenance unit view",
    rules_readonly: "Changing rules needs an admin token",
    elevators_legend: "● elevator",
    kitchens_legend: "■ kitchen",
    markets_legend: "◆ market",
  },
};

let lang = localStorage.getItem(LANG_KEY) || "zh-CN";
if (!WORDS[lang]) lang = "zh-CN";

export function currentLang() {
  return lang;
}

export function toggleLang() {
  lang = lang === "en" ? "zh-CN" : "en";
  localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang;
}

/** The word for `key` in the current language (the key itself when there is none). */
export function t(key) {
  return (WORDS[lang] && WORDS[lang][key]) || WORDS["zh-CN"][key] || key;
}

/** Fills every element with a `data-t` attribute with its word. */
export function translatePage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of document.querySelectorAll("[data-t-placeholder]"))
    el.placeholder = t(el.dataset.tPlaceholder);
}

/** A rule's summary in the current language. */
export function summary(alert) {
  const a = alert.annotations || {};
  return (lang === "en" ? a.summary_en || a.summary_zh : a.summary_zh || a.summary_en) ||
    alert.description || alert.rule;
}

/** A duration as `1h 02m`, `3m 05s` or `12s`. */
export function age(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  if (h > 0) return `${h}h ${pad(m)}m`;
  if (m > 0) return `${m}m ${pad(s % 60)}s`;
  return `${s}s`;
}

/** Epoch ms as a local time of day (or date and time when not today). */
export function clock(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString(lang, { hour12: false })
    : d.toLocaleString(lang, { hour12: false });
}
