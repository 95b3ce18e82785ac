# ruff: noqa: E501 - a table of endpoints reads best one per line
"""The permission catalog as data: one line per endpoint.

Columns: permission name, HTTP method, route path template, resource, [action] [flags].
Coiote endpoints are named exactly as the Coiote access document writes them (relative
to ``/api/coiotedm/v3/``), even where its rendering of a path differs from the real route
(``deviceMonitoring/{data_deviceId}/...`` is ``deviceMonitoring/data/{deviceId}/...``).
The action defaults from the method: GET -> view, DELETE -> delete, others -> edit.
Flags: ``public`` (no authentication), ``self`` (every signed-in user holds it).
"""

from typing import Literal

Action = Literal["view", "edit", "delete"]

COIOTE = "/api/coiotedm/v3/"

# name | method | path (relative to the Coiote base unless it starts with /) | resource | extra
COIOTE_ENDPOINTS = """
GET devices                                    | GET    | devices                                   | Devices
GET devices/find/details                       | GET    | devices/find/details                      | Devices
POST devices                                   | POST   | devices                                   | Devices
POST devices/batch                             | POST   | devices/batch                             | Devices
GET devices/{id}                               | GET    | devices/{id}                              | Devices
PUT devices/{id}                               | PUT    | devices/{id}                              | Devices
DELETE devices/{id}                            | DELETE | devices/{id}                              | Devices
GET devices/all/count                          | GET    | devices/all/count                         | Devices
GET groups                                     | GET    | groups                                    | Groups
POST groups                                    | POST   | groups                                    | Groups
GET groups/{id}                                | GET    | groups/{id}                               | Groups
PUT groups/{id}                                | PUT    | groups/{id}                               | Groups
DELETE groups/{id}                             | DELETE | groups/{id}                               | Groups
GET domains                                    | GET    | domains                                   | Domains
POST domains                                   | POST   | domains                                   | Domains
GET domains/{id}                               | GET    | domains/{id}                              | Domains
PUT domains/{id}                               | PUT    | domains/{id}                              | Domains
DELETE domains/{id}                            | DELETE | domains/{id}                              | Domains
POST users                                     | POST   | users                                     | Users
GET users/{id}                                 | GET    | users/{id}                                | Users
PATCH users/{id}                               | PATCH  | users/{id}                                | Users
DELETE users/{id}                              | DELETE | users/{id}                                | Users
GET users/search/usernames                     | GET    | users/search/usernames                    | Users
GET tasks                                      | GET    | tasks                                     | Tasks
GET tasks/{id}                                 | GET    | tasks/{id}                                | Tasks
PUT tasks/{id}                                 | PUT    | tasks/{id}                                | Tasks
DELETE tasks/{id}                              | DELETE | tasks/{id}                                | Tasks
POST tasks/configure/{deviceId}                | POST   | tasks/configure/{deviceId}                | Tasks
POST tasks/upgrade/{deviceId}/{resourceId}     | POST   | tasks/upgrade/{deviceId}/{resourceId}     | Tasks
DELETE tasks/callback/{taskId}/{callbackName}  | DELETE | tasks/callback/{taskId}/{callbackName}    | Tasks
POST tasksFromTemplates/device/{id}            | POST   | tasksFromTemplates/device/{id}            | Tasks
POST tasksFromTemplates/group/{groupId}        | POST   | tasksFromTemplates/group/{groupId}        | Tasks
GET tasksFromTemplates/templates               | GET    | tasksFromTemplates/templates              | Tasks
PUT tasksFromTemplates/templates/{name}        | PUT    | tasksFromTemplates/templates/{name}       | Tasks
DELETE tasksFromTemplates/templates/{name}     | DELETE | tasksFromTemplates/templates/{name}       | Tasks
GET taskReports                                | GET    | taskReports                               | TaskReports
GET taskReports/{taskId}/{deviceId}            | GET    | taskReports/{taskId}/{deviceId}           | TaskReports
GET taskReports/findReports                    | GET    | taskReports/findReports                   | TaskReports
GET taskReports/moreReports                    | GET    | taskReports/moreReports                   | TaskReports
GET taskReports/findSince                      | GET    | taskReports/findSince                     | TaskReports
GET taskReports/summary                        | GET    | taskReports/summary                       | TaskReports
POST sessions/{deviceId}                       | POST   | sessions/{deviceId}                       | Sessions
POST sessions/{deviceId}/allow-deregistered    | POST   | sessions/{deviceId}/allow-deregistered    | Sessions
GET observations                               | GET    | observations                              | Observations
GET observations/device/{deviceId}/{path}      | GET    | observations/device/{deviceId}/{path}     | Observations
POST observations/device/{deviceId}/{path}     | POST   | observations/device/{deviceId}/{path}     | Observations
DELETE observations/device/{deviceId}/{path}   | DELETE | observations/device/{deviceId}/{path}     | Observations
POST observations/group/resourcePath/{groupId}/{path} | POST | observations/group/resourcePath/{groupId}/{path} | Observations
POST observations/group/resourceUrl/{groupId}/{url}   | POST | observations/group/resourceUrl/{groupId}/{url}   | Observations
GET cachedDataModels/{deviceId}                | GET    | cachedDataModels/{deviceId}               | DataModel
GET instantiatedResources/dataModelDefinition/{deviceId} | GET | instantiatedResources/dataModelDefinition/{deviceId} | DataModel
GET instantiatedResources/resourcesData/{deviceId}       | GET | instantiatedResources/resourcesData/{deviceId}       | DataModel
POST dialects/addObject                        | POST   | dialects/addObject                        | Dialects
PUT dialects/addObject                         | PUT    | dialects/addObject                        | Dialects
GET settingValues                              | GET    | settingValues                             | SettingValues
PUT settingValues                              | PUT    | settingValues                             | SettingValues
GET settingValues/deviceProfile/{deviceId}     | GET    | settingValues/deviceProfile/{deviceId}    | SettingValues
GET settingValues/groupProfile/{groupId}       | GET    | settingValues/groupProfile/{groupId}      | SettingValues
POST deviceMonitoring/configuration/device/{deviceId}/enable   | POST | deviceMonitoring/configuration/device/{deviceId}/enable  | DeviceMonitoring
POST deviceMonitoring/configuration/device/{deviceId}/disable  | POST | deviceMonitoring/configuration/device/{deviceId}/disable | DeviceMonitoring
POST deviceMonitoring/configuration/{group_groupId}/enable/    | POST | deviceMonitoring/configuration/group/{groupId}/enable    | DeviceMonitoring
POST deviceMonitoring/configuration/group/{groupId}/disable    | POST | deviceMonitoring/configuration/group/{groupId}/disable   | DeviceMonitoring
GET deviceMonitoring/configuration/device/{deviceId}/enabled   | GET  | deviceMonitoring/configuration/device/{deviceId}/enabled | DeviceMonitoring
POST deviceMonitoring/configuration/device/{deviceId}/alias    | POST | deviceMonitoring/configuration/device/{deviceId}/alias   | DeviceMonitoring
GET deviceMonitoring/configuration/device/{deviceId}/aliases   | GET  | deviceMonitoring/configuration/device/{deviceId}/aliases | DeviceMonitoring
DELETE deviceMonitoring/configuration/device/{deviceId}/resourceUrl/{lwm2mUrl} | DELETE | deviceMonitoring/configuration/device/{deviceId}/resourceUrl/{lwm2mUrl} | DeviceMonitoring
GET deviceMonitoring/{data_deviceId}/resourceUrl/{lwm2mUrl}    | GET  | deviceMonitoring/data/{deviceId}/resourceUrl/{lwm2mUrl}  | DeviceMonitoring
GET deviceMonitoring/{data_deviceId}/alias/{alias}             | GET  | deviceMonitoring/data/{deviceId}/alias/{alias}           | DeviceMonitoring
GET deviceMonitoring/{deviceId}/resourceUrl/{lwm2mUrl}        | GET  | deviceMonitoring/{deviceId}/resourceUrl/{lwm2mUrl}       | DeviceMonitoring
GET deviceMonitoring/{deviceId}/alias/{alias}                 | GET  | deviceMonitoring/{deviceId}/alias/{alias}                | DeviceMonitoring
GET monitoring                                 | GET    | monitoring                                | Monitoring
POST monitoring                                | POST   | monitoring                                | Monitoring
GET monitoring/{monitoringName}                | GET    | monitoring/{monitoringName}               | Monitoring
PUT monitoring/{monitoringName}                | PUT    | monitoring/{monitoringName}               | Monitoring
DELETE monitoring/{monitoringName}             | DELETE | monitoring/{monitoringName}               | Monitoring
GET monitoringData/aggregates/numerical/{monitoringName}/{groupId}/{resourceName} | GET | monitoringData/aggregates/numerical/{monitoringName}/{groupId}/{resourceName} | Monitoring
GET monitoringData/aggregates/textual/{monitoringName}/{groupId}/{resourceName}   | GET | monitoringData/aggregates/textual/{monitoringName}/{groupId}/{resourceName}   | Monitoring
GET monitoringData/moreSamples                 | GET    | monitoringData/moreSamples                | Monitoring
GET monitoringData/samples/{monitoringName}/{deviceId} | GET | monitoringData/samples/{monitoringName}/{deviceId} | Monitoring
GET deviceEvents/handler                       | GET    | deviceEvents/handler                      | DeviceEvents
GET deviceEvents/handler/{id}                  | GET    | deviceEvents/handler/{id}                 | DeviceEvents
DELETE deviceEvents/handler/{id}               | DELETE | deviceEvents/handler/{id}                 | DeviceEvents
POST deviceEvents/handler/webhook              | POST   | deviceEvents/handler/webhook              | DeviceEvents
POST deviceEvents/handler/kafka                | POST   | deviceEvents/handler/kafka                | DeviceEvents
PUT deviceEvents/handler/webhook/{id}          | PUT    | deviceEvents/handler/webhook/{id}         | DeviceEvents
PUT deviceEvents/handler/kafka/{id}            | PUT    | deviceEvents/handler/kafka/{id}           | DeviceEvents
POST deviceEvents/handler/test/existing/{id}   | POST   | deviceEvents/handler/test/existing/{id}   | DeviceEvents
POST deviceEvents/handler/test/webhook         | POST   | deviceEvents/handler/test/webhook         | DeviceEvents
POST deviceEvents/handler/test/kafka           | POST   | deviceEvents/handler/test/kafka           | DeviceEvents
POST deviceEvents/handler/mqtt                 | POST   | deviceEvents/handler/mqtt                 | DeviceEvents
PUT deviceEvents/handler/mqtt/{id}             | PUT    | deviceEvents/handler/mqtt/{id}            | DeviceEvents
POST deviceEvents/handler/test/mqtt            | POST   | deviceEvents/handler/test/mqtt            | DeviceEvents
GET resources                                  | GET    | resources                                 | Resources
POST resources                                 | POST   | resources                                 | Resources
GET resources/{id}                             | GET    | resources/{id}                            | Resources
DELETE resources/{id}                          | DELETE | resources/{id}                            | Resources
PUT resources/{id}/data                        | PUT    | resources/{id}/data                       | Resources
POST resources/{id}/downloadUrl                | POST   | resources/{id}/downloadUrl                | Resources
GET events                                     | GET    | events                                    | Events
GET bootstrap/configuration/device/{deviceId}    | GET    | bootstrap/configuration/device/{deviceId}    | Devices
PUT bootstrap/configuration/device/{deviceId}    | PUT    | bootstrap/configuration/device/{deviceId}    | Devices
DELETE bootstrap/configuration/device/{deviceId} | DELETE | bootstrap/configuration/device/{deviceId}    | Devices
GET bootstrap/configuration/group/{groupId}      | GET    | bootstrap/configuration/group/{groupId}      | Groups
PUT bootstrap/configuration/group/{groupId}      | PUT    | bootstrap/configuration/group/{groupId}      | Groups
DELETE bootstrap/configuration/group/{groupId}   | DELETE | bootstrap/configuration/group/{groupId}      | Groups
GET alerts/rules                               | GET    | alerts/rules                              | Alerts
POST alerts/rules                              | POST   | alerts/rules                              | Alerts
GET alerts/rules/{id}                          | GET    | alerts/rules/{id}                         | Alerts
PUT alerts/rules/{id}                          | PUT    | alerts/rules/{id}                         | Alerts
DELETE alerts/rules/{id}                       | DELETE | alerts/rules/{id}                         | Alerts
GET alerts                                     | GET    | alerts                                    | Alerts
GET alerts/{id}                                | GET    | alerts/{id}                               | Alerts
POST alerts/{id}/acknowledge                   | POST   | alerts/{id}/acknowledge                   | Alerts
"""

# Endpoints outside the Coiote surface: authentication, self-service, administration.
PLATFORM_ENDPOINTS = """
auth:POST /api/auth/oauth_password                 | POST   | /api/auth/oauth_password                  | Login     | edit public
auth:POST /api/auth/signup                         | POST   | /api/auth/signup                          | Login     | edit public
auth:GET /signup                                   | GET    | /signup                                   | Login     | view public
auth:POST /iam/realms/{realm}/protocol/openid-connect/token | POST | /iam/realms/{realm}/protocol/openid-connect/token | Login | edit public
console:POST /Auth                                 | POST   | /Auth                                     | Login     | edit public
console:POST /Auth/refresh                         | POST   | /Auth/refresh                             | Login     | edit public
auth:POST /api/auth/refresh                        | POST   | /api/auth/refresh                         | Login     | edit public
firmware:GET /fw                                   | GET    | /fw                                       | Firmware  | view public
health:GET /health                                 | GET    | /health                                   | Health    | view public
health:GET /ready                                  | GET    | /ready                                    | Health    | view public
auth:GET /api/auth/me                              | GET    | /api/auth/me                              | Account   | view self
auth:POST /api/auth/logout                         | POST   | /api/auth/logout                          | Account   | edit self
auth:PUT /api/auth/password                        | PUT    | /api/auth/password                        | Account   | edit self
auth:POST /api/auth/2fa/enroll                     | POST   | /api/auth/2fa/enroll                      | Account   | edit self
auth:POST /api/auth/2fa/confirm                    | POST   | /api/auth/2fa/confirm                     | Account   | edit self
auth:DELETE /api/auth/2fa                          | DELETE | /api/auth/2fa                             | Account   | delete self
auth:POST /api/auth/2fa/recovery-codes             | POST   | /api/auth/2fa/recovery-codes              | Account   | edit self
auth:GET /api/auth/tokens                          | GET    | /api/auth/tokens                          | API
auth:POST /api/auth/tokens                         | POST   | /api/auth/tokens                          | API
auth:DELETE /api/auth/tokens/{id}                  | DELETE | /api/auth/tokens/{id}                     | API
admin:GET /api/admin/audit                         | GET    | /api/admin/audit                          | AuditLogs
admin:GET /api/admin/roles                         | GET    | /api/admin/roles                          | UserProfile
admin:POST /api/admin/roles                        | POST   | /api/admin/roles                          | UserProfile
admin:GET /api/admin/roles/{id}                    | GET    | /api/admin/roles/{id}                     | UserProfile
admin:PUT /api/admin/roles/{id}                    | PUT    | /api/admin/roles/{id}                     | UserProfile
admin:DELETE /api/admin/roles/{id}                 | DELETE | /api/admin/roles/{id}                     | UserProfile
admin:GET /api/admin/users                         | GET    | /api/admin/users                          | Users
admin:GET /api/admin/service-accounts              | GET    | /api/admin/service-accounts               | ServiceAccounts
admin:POST /api/admin/service-accounts             | POST   | /api/admin/service-accounts               | ServiceAccounts
admin:DELETE /api/admin/service-accounts/{clientId} | DELETE | /api/admin/service-accounts/{clientId}   | ServiceAccounts
admin:GET /metrics                                 | GET    | /metrics                                  | Metrics
"""

# The endpoints a Developer or Business account may call (Coiote access document, verbatim).
DEVELOPER_ENDPOINTS = """
GET cachedDataModels/{deviceId}
DELETE deviceEvents/handler/{id}
GET deviceEvents/handler
GET deviceEvents/handler/{id}
POST deviceMonitoring/configuration/{group_groupId}/enable/
GET deviceMonitoring/{data_deviceId}/alias/{alias}
GET deviceMonitoring/{data_deviceId}/resourceUrl/{lwm2mUrl}
DELETE devices/{id}
GET devices
GET devices/{id}
POST devices
PUT devices/{id}
GET devices/all/count
POST dialects/addObject
GET domains
GET domains/{id}
DELETE groups/{id}
GET groups
GET groups/{id}
POST groups
PUT groups/{id}
GET instantiatedResources/dataModelDefinition/{deviceId}
GET instantiatedResources/resourcesData/{deviceId}
DELETE monitoring/{monitoringName}
GET monitoring
GET monitoring/{monitoringName}
POST monitoring
PUT monitoring/{monitoringName}
GET monitoringData/aggregates/numerical/{monitoringName}/{groupId}/{resourceName}
GET monitoringData/aggregates/textual/{monitoringName}/{groupId}/{resourceName}
GET monitoringData/moreSamples
GET monitoringData/samples/{monitoringName}/{deviceId}
GET observations
DELETE observations/device/{deviceId}/{path}
GET observations/device/{deviceId}/{path}
POST observations/device/{deviceId}/{path}
POST sessions/{deviceId}
GET settingValues
PUT settingValues
GET settingValues/deviceProfile/{deviceId}
GET settingValues/groupProfile/{groupId}
GET taskReports
GET taskReports/{taskId}/{deviceId}
GET tasks
GET tasks/{id}
DELETE tasks/callback/{taskId}/{callbackName}
GET users/{id}
"""

# The LwM2M operations API (Leshan demo server's routes, numeric paths, domain-scoped).
LWM2M_ENDPOINTS = """
lwm2m:GET /api/lwm2m/v1/clients                               | GET    | /api/lwm2m/v1/clients                               | Devices | view
lwm2m:GET /api/lwm2m/v1/clients/{ep}                          | GET    | /api/lwm2m/v1/clients/{ep}                          | Devices | view
lwm2m:GET /api/lwm2m/v1/clients/{ep}/{path}                   | GET    | /api/lwm2m/v1/clients/{ep}/{path}                   | Devices | view
lwm2m:GET /api/lwm2m/v1/clients/{ep}/{path}/discover          | GET    | /api/lwm2m/v1/clients/{ep}/{path}/discover          | Devices | view
lwm2m:PUT /api/lwm2m/v1/clients/{ep}/{path}                   | PUT    | /api/lwm2m/v1/clients/{ep}/{path}                   | Devices | edit
lwm2m:PUT /api/lwm2m/v1/clients/{ep}/{path}/attributes        | PUT    | /api/lwm2m/v1/clients/{ep}/{path}/attributes        | Devices | edit
lwm2m:POST /api/lwm2m/v1/clients/{ep}/{path}                  | POST   | /api/lwm2m/v1/clients/{ep}/{path}                   | Devices | edit
lwm2m:DELETE /api/lwm2m/v1/clients/{ep}/{path}                | DELETE | /api/lwm2m/v1/clients/{ep}/{path}                   | Devices | delete
lwm2m:POST /api/lwm2m/v1/clients/{ep}/{path}/observe          | POST   | /api/lwm2m/v1/clients/{ep}/{path}/observe           | Devices | edit
lwm2m:DELETE /api/lwm2m/v1/clients/{ep}/{path}/observe        | DELETE | /api/lwm2m/v1/clients/{ep}/{path}/observe           | Devices | edit
lwm2m:GET /api/lwm2m/v1/clients/{ep}/composite                | GET    | /api/lwm2m/v1/clients/{ep}/composite                | Devices | view
lwm2m:PUT /api/lwm2m/v1/clients/{ep}/composite                | PUT    | /api/lwm2m/v1/clients/{ep}/composite                | Devices | edit
lwm2m:POST /api/lwm2m/v1/clients/{ep}/composite/observe       | POST   | /api/lwm2m/v1/clients/{ep}/composite/observe        | Devices | edit
lwm2m:DELETE /api/lwm2m/v1/clients/{ep}/composite/observe     | DELETE | /api/lwm2m/v1/clients/{ep}/composite/observe        | Devices | edit
lwm2m:GET /api/lwm2m/v1/events                                | GET    | /api/lwm2m/v1/events                                | Devices | view
"""

# The Monogoto console's connectivity surface (SIMs as Things). Paths as the console has
# them; actions as its profiles grant them: actions on a Thing (ping, SMS, refresh) are
# ``edit`` whatever their method, and searching the CDR log is a ``view``.
CONSOLE_ENDPOINTS = """
console:GET /things                                | GET    | /things                                   | Things
console:POST /thing                                | POST   | /thing                                    | Things
console:POST /things/import                        | POST   | /things/import                            | Things
console:GET /thing/status                          | GET    | /thing/status                             | Things
console:PUT /thing/update                          | PUT    | /thing/update                             | Things
console:GET /thing/{ThingId}                       | GET    | /thing/{ThingId}                          | Things
console:DELETE /thing/{ThingId}                    | DELETE | /thing/{ThingId}                          | Things
console:GET /thing/{ThingId}/state                 | GET    | /thing/{ThingId}/state                    | Things
console:PUT /thing/{ThingId}/state                 | PUT    | /thing/{ThingId}/state                    | Things
console:PUT /thing/{ThingId}/device                | PUT    | /thing/{ThingId}/device                   | Things
console:GET /thing/{ThingId}/refreshConnection     | GET    | /thing/{ThingId}/refreshConnection        | Things    | edit
console:POST /thing/{ThingId}/ping                 | POST   | /thing/{ThingId}/ping                     | Things
console:POST /thing/{ThingId}/sms                  | POST   | /thing/{ThingId}/sms                      | Things
console:POST /thing/searchCDR                      | POST   | /thing/searchCDR                          | Search    | view
console:GET /thingsgroups                          | GET    | /thingsgroups                             | ThingsGroup
console:POST /thingsgroup                          | POST   | /thingsgroup                              | ThingsGroup
console:GET /thingsgroup/{ThingsGroupId}           | GET    | /thingsgroup/{ThingsGroupId}              | ThingsGroup
console:PUT /thingsgroup/{ThingsGroupId}           | PUT    | /thingsgroup/{ThingsGroupId}              | ThingsGroup
console:DELETE /thingsgroup/{ThingsGroupId}        | DELETE | /thingsgroup/{ThingsGroupId}              | ThingsGroup
console:GET /tags                                  | GET    | /tags                                     | Tags
console:POST /tag                                  | POST   | /tag                                      | Tags
console:DELETE /tag/{TagId}                        | DELETE | /tag/{TagId}                              | Tags
console:GET /report-templates                      | GET    | /report-templates                         | ReportTemplate
console:POST /report-template                      | POST   | /report-template                          | ReportTemplate
console:POST /report-history/{ReportTemplateId}    | POST   | /report-history/{ReportTemplateId}        | ReportHistory
console:GET /report-history/byTemplate             | GET    | /report-history/byTemplate                | ReportHistory
console:GET /report-history/downloadReport/csv/{csvPath} | GET | /report-history/downloadReport/csv/{csvPath} | ReportHistory
"""

# The Customer Admin profile of the Monogoto /Auth document, resource for resource and
# verb for verb (its "view7" under Search is a typo for "view"). Cells that no route
# above covers are capabilities: granted, shown and checked by the console's services
# (``ThingsSensitiveData`` guards IMSI/MSISDN/keys), or held for console resources
# Meadowlark has no data for (pricing, IP pools, dashboards...).
CUSTOMER_ADMIN_PROFILE: dict[str, tuple[Action, ...]] = {
    "API": ("view",),
    "AlertsTasksSettings": ("view", "edit", "delete"),
    "ApnAllowedToCustomer": ("view", "edit", "delete"),
    "AuditLogs": ("view",),
    "AuditLogsOwned": ("view",),
    "BillingReports": ("view",),
    "CurrencyCodes": ("view",),
    "Dashboard": ("view", "edit", "delete"),
    "ExternalHLR": ("view",),
    "GlobalSettings": ("view",),
    "IpPools": ("view", "edit", "delete"),
    "MobileSubscriber": ("view", "edit", "delete"),
    "NetwSecSettings": ("view", "edit", "delete"),
    "NetworkProvider": ("view",),
    "NetworkProviderDetails": ("view", "edit", "delete"),
    "PortalAlertsTasksSettings": ("view",),
    "PortalAuditLogs": ("view",),
    "PortalBillingReports": ("view",),
    "PortalDashboard": ("view",),
    "PortalIpPools": ("view",),
    "PortalLogin": ("view",),
    "PortalMobileIdentities": ("view",),
    "PortalNetwork": ("view",),
    "PortalPricePlanDetails": ("view",),
    "PortalRealtimeDashboard": ("view",),
    "PortalRoamingOwned": ("view",),
    "PortalSecurity": ("view",),
    "PortalSettings": ("view",),
    "PortalThings": ("view",),
    "PortalThingsGroups": ("view",),
    "PortalUsers": ("view",),
    "PricePlanDetails": ("view", "edit", "delete"),
    "RoamingOwned": ("view", "edit", "delete"),
    "Settings": ("view",),
    "Tags": ("view", "edit", "delete"),
    "TagsOwned": ("view", "edit", "delete"),
    "Things": ("view", "edit", "delete"),
    "ThingsGroup": ("view", "edit", "delete"),
    "ThingsGroupOwned": ("view", "edit", "delete"),
    "ThingsSensitiveData": ("view", "edit", "delete"),
    "UserProfile": ("view",),
    "Users": ("view", "edit", "delete"),
    "PortalReports": ("view",),
    "ReportTemplate": ("view", "edit", "delete"),
    "ReportHistory": ("view", "edit", "delete"),
    "DownloadReportInPdf": ("view", "edit", "delete"),
    "Scheduler": ("view", "edit", "delete"),
    "PortalScheduler": ("view",),
    "Search": ("view", "edit", "delete"),
    "DownloadPCAPFile": ("view",),
    "DataLocationService": ("view",),
    "Bundle": ("view", "edit", "delete"),
}
PRICING_RESOURCES = (
    "BillingReports",
    "CurrencyCodes",
    "PricePlanDetails",
    "PortalBillingReports",
    "PortalPricePlanDetails",
    "Bundle",
)
"""What the Standard profile leaves out besides user management ("no pricing")."""
NODE_WIDE_RESOURCES = ("Metrics",)
"""Figures of the whole node, every tenant's together: of the built-in roles only Admin
holds them (and the route also wants a caller of the root domain)."""
