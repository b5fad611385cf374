// Latin words the Chinese console keeps on purpose: names the operator types or reads in Latin
// letters elsewhere too (the product, ids, the API, WeCom's AgentId and userid, HTTP, IP, the
// README). Used by i18n.test.mjs (the zh-CN messages) and console.test.mjs (the rendered pages).
export const LATIN_OK = new Set(['tagsync', 'ID', 'API', 'AgentId', 'userid', 'HTTP', 'IP', 'README']);
