"""The audit trail in Django admin: superusers read it; nobody adds, changes or deletes an event
(managers read their projects' trail on the project's audit page)."""

from django.contrib import admin

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_name", "action", "project", "object_repr"]
    list_filter = ["action", "created_at"]
    search_fields = ["actor_name", "object_repr", "object_id"]
    list_select_related = ["project"]
    date_hierarchy = "created_at"
    fields = ["created_at", "actor", "actor_name", "action", "project", "object_type", "object_id", "object_repr",
              "details"]
    readonly_fields = fields

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
